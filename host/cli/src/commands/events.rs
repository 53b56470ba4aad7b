//! `edgehost client attach` and `edgehost events`: users that move, and what
//! ALM decided about their agents.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use edgehost_fleet::protocol::{AgentName, Event, Request, Response};

use super::client::ClientArgs;

/// What a client reports about itself.
#[derive(Args)]
pub struct ClientCommand {
    #[command(subcommand)]
    action: ClientAction,
}

#[derive(Subcommand)]
enum ClientAction {
    /// Report that this user is now attached to HOST (or to the host at
    /// SITE); the hosts running the given agents run ALM at once and move
    /// them if it pays.
    Attach {
        /// The host the user is attached to now, or its site.
        #[arg(value_name = "HOST|SITE")]
        host: String,
        /// An agent serving this user; repeatable.
        #[arg(long = "agent", value_name = "NAME", required = true)]
        agents: Vec<AgentName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl ClientCommand {
    /// Sends the attachment for each agent and prints the decisions.
    pub fn execute(self) -> Result<()> {
        let ClientAction::Attach {
            host,
            agents,
            json,
            client,
        } = self.action;
        let session = client.connect()?;
        let host = session.user_host(&host)?;
        let mut decided: Vec<Event> = Vec::new();
        let mut failures = Vec::new();
        for agent in agents {
            match session.call(&Request::Attach {
                agent: agent.clone(),
                host: host.clone(),
            }) {
                Ok(Response::Decided(events)) => decided.extend(events),
                Ok(other) => failures.push(format!("{agent}: {:?}", other)),
                Err(e) => failures.push(format!("{agent}: {e:#}")),
            }
        }
        session.close();
        print_events(&decided, json)?;
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(())
    }
}

/// Show the migration decisions ALM made across the fleet.
#[derive(Args)]
pub struct EventsCommand {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl EventsCommand {
    /// Collects the events of every reachable host, oldest first.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        // A host that cannot be reached or asked has no events to add.
        let answers =
            session.on_every_reachable_host(async |connection| match edgehost_fleet::client::call(
                connection,
                &Request::Events,
            )
            .await?
            {
                Response::Events(events) => Ok(events),
                other => Err(edgehost_fleet::client::unexpected(&other).into()),
            });
        let mut events: Vec<Event> = answers?
            .into_iter()
            .filter_map(|(_, answer)| answer.ok())
            .flatten()
            .collect();
        session.close();
        events.sort_by_key(|e| e.at_ms);
        print_events(&events, self.json)
    }
}

/// Prints events, one line each (times in UTC), or as JSON.
fn print_events(events: &[Event], json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(events)?);
        return Ok(());
    }
    for e in events {
        let secs = e.at_ms / 1000;
        outln!(
            "{:02}:{:02}:{:02} {} {} [{}]: {} — {}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            e.host,
            e.agent,
            e.trigger,
            e.decision,
            e.reasons.join("; ")
        );
    }
    Ok(())
}
