//! `edgehost completions` and `edgehost man`: shell completions and manual
//! pages, generated from the same definitions as `--help`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Print a shell completion script.
///
/// bash: `edgehost completions bash > /etc/bash_completion.d/edgehost`;
/// zsh: `edgehost completions zsh > "${fpath[1]}/_edgehost"`;
/// fish: `edgehost completions fish > ~/.config/fish/completions/edgehost.fish`.
#[derive(Args)]
pub struct CompletionsCommand {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsCommand {
    /// Prints the script on stdout.
    pub fn execute(self) -> Result<()> {
        let mut command = crate::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "edgehost", &mut script);
        write_stdout(&script);
        Ok(())
    }
}

/// Write manual pages: `edgehost.1` on stdout, or one page per subcommand
/// into a directory (`man -l DIR/edgehost-push.1`).
#[derive(Args)]
pub struct ManCommand {
    /// Write `edgehost.1` and `edgehost-<subcommand>.1` into this directory
    /// instead of printing `edgehost.1`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl ManCommand {
    /// Renders the pages.
    pub fn execute(self) -> Result<()> {
        let command = crate::Cli::command();
        let Some(dir) = self.out else {
            write_stdout(&render(command)?);
            return Ok(());
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut pages = vec![("edgehost.1".to_owned(), render(command.clone())?)];
        for sub in command.get_subcommands() {
            let name = format!("edgehost-{}", sub.get_name());
            pages.push((format!("{name}.1"), render(sub.clone().name(name))?));
        }
        for (file, page) in &pages {
            let path = dir.join(file);
            std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        }
        outln!("wrote {} pages into {}", pages.len(), dir.display());
        Ok(())
    }
}

fn render(command: clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("rendering the manual page")?;
    Ok(page)
}

/// Writes bytes to stdout, ending quietly when the reader left.
fn write_stdout(bytes: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        crate::stdout_failed(e);
    }
}
