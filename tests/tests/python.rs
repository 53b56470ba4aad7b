//! Python agents (componentize-py, `agents/python`) in the runtime: the same
//! `agent` world as the Rust agents, state carried across fresh instances,
//! bad state refused, and Python exceptions returned as the world's errors,
//! never as traps.
//!
//! A Python component is about 18 MB (it carries CPython): the first test
//! to load one compiles it (seconds), the others load the artifact from the
//! cache shared by this binary.

use std::path::Path;
use std::sync::{Arc, Mutex};

use edgehost_runtime::{
    AgentError, AgentInstance, Completion, Error, HostError, Llm, NoRoutes, Runtime,
    RuntimeBuilder, Services,
};
use edgehost_tests::{PYTHON_DIALOG_AGENT, PYTHON_FAULTY_AGENT, PYTHON_TEMPLATE_AGENT, load};

fn runtime() -> Runtime {
    RuntimeBuilder::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-cache"))
        .build()
        .expect("runtime starts")
}

fn start(runtime: &Runtime, path: &str, config: &[(&str, &str)]) -> AgentInstance {
    let component = load(runtime, path);
    let mut agent = runtime
        .instantiate(&component, "py", Services::default())
        .expect("instantiate");
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    agent.init(&config).expect("init");
    agent
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 response")
}

#[test]
fn the_dialog_agent_carries_its_memory_across_fresh_instances() {
    let rt = runtime();
    let component = load(&rt, PYTHON_DIALOG_AGENT);
    assert_eq!(
        component.info().world.as_deref(),
        Some("edgehost:agent/agent")
    );

    let mut first = start(&rt, PYTHON_DIALOG_AGENT, &[("max-turns", "4")]);
    assert_eq!(first.descriptor().kind, "dialog");
    assert_eq!(first.descriptor().demand.memory_mib, 64);
    assert_eq!(
        text(first.handle(b"remember the cat is Ada").unwrap()),
        "noted #1"
    );
    assert_eq!(
        text(first.handle(b"remember the dog is Bo").unwrap()),
        "noted #2"
    );
    // No LLM on this host: the agent answers from its notes and says so.
    let chat = text(first.handle(b"what are their names?").unwrap());
    assert!(chat.contains("no LLM configured"), "{chat}");
    let blob = first.export_state().unwrap();
    drop(first);

    let mut second = start(&rt, PYTHON_DIALOG_AGENT, &[("max-turns", "4")]);
    assert!(text(second.handle(b"stats").unwrap()).starts_with("notes=0 turns=0 "));
    second.import_state(&blob).unwrap();
    assert_eq!(
        text(second.handle(b"notes").unwrap()),
        "the cat is Ada\nthe dog is Bo"
    );
    assert_eq!(
        text(second.handle(b"remember the fish is Cy").unwrap()),
        "noted #3"
    );
    let blob2 = second.export_state().unwrap();

    let mut third = start(&rt, PYTHON_DIALOG_AGENT, &[("max-turns", "4")]);
    third.import_state(&blob2).unwrap();
    let stats = text(third.handle(b"stats").unwrap());
    assert_eq!(stats, format!("notes=3 turns=2 bytes={}", blob2.len()));
    // An untouched import exports the same blob.
    assert_eq!(third.export_state().unwrap(), blob2);
}

#[test]
fn garbage_state_is_refused_and_changes_nothing() {
    let rt = runtime();
    let mut agent = start(&rt, PYTHON_DIALOG_AGENT, &[]);
    agent.handle(b"remember keep me").unwrap();
    let before = agent.export_state().unwrap();

    let deep = format!(
        "{{\"edgehost-python-state\":1,\"kind\":\"dialog\",\"state\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let template = br#"{"edgehost-python-state":1,"kind":"counter","state":{"count":2}}"#;
    let wrong_shape = br#"{"edgehost-python-state":1,"kind":"dialog","state":{"notes":[1]}}"#;
    let future = br#"{"edgehost-python-state":9,"kind":"dialog","state":{}}"#;
    for (garbage, expect) in [
        (&b""[..], "not a Python agent state"),
        (b"\xff\xfe hello", "not a Python agent state"),
        (&before[..before.len() - 1], "not a Python agent state"),
        (template, "'counter'"),
        (wrong_shape, "'notes'"),
        (future, "version"),
        (deep.as_bytes(), "nests deeper"),
    ] {
        match agent.import_state(garbage) {
            Err(Error::Agent(AgentError::InvalidState(msg))) => {
                assert!(msg.contains(expect), "{msg:?} lacks {expect:?}")
            }
            other => panic!("garbage state gave {other:?}"),
        }
        assert!(agent.poisoned().is_none());
        assert_eq!(agent.export_state().unwrap(), before);
    }
    assert_eq!(text(agent.handle(b"notes").unwrap()), "keep me");
}

#[test]
fn python_exceptions_are_agent_errors_with_the_python_message() {
    let rt = runtime();
    let mut agent = start(&rt, PYTHON_FAULTY_AGENT, &[]);
    for (request, expect) in [
        ("keyerror", "KeyError: 'missing'"),
        ("divide", "ZeroDivisionError: division by zero"),
        ("recurse", "RecursionError"),
        ("late-import", "ModuleNotFoundError"),
        ("exit", "SystemExit: 3"),
    ] {
        match agent.handle(request.as_bytes()) {
            Err(Error::Agent(AgentError::Internal(msg))) => {
                assert!(msg.contains(expect), "{request}: {msg:?}")
            }
            other => panic!("{request} gave {other:?}"),
        }
        assert!(agent.poisoned().is_none(), "{request} poisoned the agent");
        assert_eq!(
            text(agent.handle(b"echo still here").unwrap()),
            "still here"
        );
    }
    // Requests and configuration the agents refuse are invalid input.
    assert!(matches!(
        agent.handle(b"\xff"),
        Err(Error::Agent(AgentError::InvalidInput(msg))) if msg.contains("UTF-8")
    ));
    let component = load(&rt, PYTHON_DIALOG_AGENT);
    let mut dialog = rt
        .instantiate(&component, "py", Services::default())
        .unwrap();
    match dialog.init(&[("max-turns".into(), "lots".into())]) {
        Err(Error::Agent(AgentError::InvalidInput(msg))) => {
            assert!(msg.contains("max-turns='lots'"), "{msg}")
        }
        other => panic!("bad config gave {other:?}"),
    }
    // Called before a successful init: an error, not a crash.
    assert!(matches!(
        dialog.handle(b"notes"),
        Err(Error::Agent(AgentError::InvalidInput(msg))) if msg.contains("before init")
    ));
}

#[test]
fn python_agents_are_held_to_their_limits() {
    let rt = runtime();
    let mut agent = start(&rt, PYTHON_FAULTY_AGENT, &[]);
    agent.set_timeout(std::time::Duration::from_millis(500));
    let bomb = agent.handle(b"bomb").unwrap_err().to_string();
    assert!(bomb.contains("48 MiB"), "{bomb}");
    let mut agent = start(&rt, PYTHON_FAULTY_AGENT, &[]);
    agent.set_timeout(std::time::Duration::from_millis(500));
    let spin = agent.handle(b"loop").unwrap_err().to_string();
    assert!(spin.contains("deadline") || spin.contains("time"), "{spin}");
    assert!(agent.poisoned().is_some());
}

#[test]
fn the_template_builds_and_counts_across_instances() {
    let rt = runtime();
    let mut agent = start(&rt, PYTHON_TEMPLATE_AGENT, &[("greeting", "hi ")]);
    assert_eq!(text(agent.handle(b"one").unwrap()), "hi #1: one");
    assert_eq!(text(agent.handle(b"two").unwrap()), "hi #2: two");
    let blob = agent.export_state().unwrap();
    let mut moved = start(&rt, PYTHON_TEMPLATE_AGENT, &[]);
    moved.import_state(&blob).unwrap();
    assert_eq!(text(moved.handle(b"three").unwrap()), "#3: three");
}

/// An LLM that answers from a script and keeps what it was asked.
struct ScriptedLlm {
    answer: Result<String, HostError>,
    asked: Mutex<Vec<Completion>>,
}

impl Llm for ScriptedLlm {
    fn complete(&self, _agent: &str, request: Completion) -> Result<String, HostError> {
        self.asked.lock().expect("not poisoned").push(request);
        self.answer.clone()
    }
}

#[test]
fn the_dialog_agent_talks_to_the_hosts_llm_with_its_memory() {
    let rt = runtime();
    let component = load(&rt, PYTHON_DIALOG_AGENT);
    let llm = Arc::new(ScriptedLlm {
        answer: Ok("At nine.".into()),
        asked: Mutex::new(Vec::new()),
    });
    let services = Services {
        llm: llm.clone(),
        router: Arc::new(NoRoutes),
    };
    let mut agent = rt.instantiate(&component, "py", services).unwrap();
    agent
        .init(&[("persona".into(), "You are terse.".into())])
        .unwrap();
    agent.handle(b"remember the train leaves at 9").unwrap();
    assert_eq!(
        text(agent.handle(b"when does the train leave?").unwrap()),
        "At nine."
    );
    assert_eq!(text(agent.handle(b"and the bus?").unwrap()), "At nine.");
    let asked = llm.asked.lock().unwrap();
    assert_eq!(asked.len(), 2);
    let second = &asked[1];
    let roles: Vec<&str> = second.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    let system = &second.messages[0].content;
    assert!(system.starts_with("You are terse."), "{system}");
    assert!(system.contains("the train leaves at 9"), "{system}");
    assert_eq!(second.messages[1].content, "when does the train leave?");
    assert_eq!(second.messages[2].content, "At nine.");
    assert_eq!(second.messages[3].content, "and the bus?");
    drop(asked);
    // The dialogue is part of the state: a fresh instance carries it on.
    let blob = agent.export_state().unwrap();
    let mut moved = start(&rt, PYTHON_DIALOG_AGENT, &[]);
    moved.import_state(&blob).unwrap();
    assert!(text(moved.handle(b"stats").unwrap()).starts_with("notes=1 turns=4 "));

    // An LLM that fails is `unavailable` for the caller, and changes nothing.
    let failing = Services {
        llm: Arc::new(ScriptedLlm {
            answer: Err(HostError::Failed("the endpoint timed out".into())),
            asked: Mutex::new(Vec::new()),
        }),
        router: Arc::new(NoRoutes),
    };
    let mut agent = rt.instantiate(&component, "py", failing).unwrap();
    agent.init(&[]).unwrap();
    agent.import_state(&blob).unwrap();
    match agent.handle(b"anyone there?") {
        Err(Error::Agent(AgentError::Unavailable(msg))) => {
            assert!(msg.contains("the endpoint timed out"), "{msg}")
        }
        other => panic!("a failing LLM gave {other:?}"),
    }
    assert_eq!(agent.export_state().unwrap(), blob);
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("creating a directory of the copy");
    for entry in std::fs::read_dir(from).expect("listing the kit") {
        let entry = entry.expect("reading a kit entry");
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copying a kit file");
        }
    }
}

fn has_pycache(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).expect("listing the kit").any(|e| {
        let path = e.expect("reading a kit entry").path();
        path.file_name().is_some_and(|n| n == "__pycache__")
            || (path.is_dir() && has_pycache(&path))
    })
}

#[test]
fn the_build_writes_nothing_into_the_kit_and_explains_a_bare_guest_class() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let checkout = tempfile::tempdir().unwrap();
    let kit = checkout.path().join("agents/python");
    for part in ["edgehost_agent", "template"] {
        copy_tree(&root.join("agents/python").join(part), &kit.join(part));
    }
    std::fs::copy(root.join("agents/python/build.py"), kit.join("build.py")).unwrap();
    copy_tree(&root.join("wit/agent"), &checkout.path().join("wit/agent"));
    let build = |out: &str| {
        std::process::Command::new("python3")
            .arg(kit.join("build.py"))
            .arg(kit.join("template"))
            .arg("-o")
            .arg(checkout.path().join(out))
            .args(["--componentize-py", edgehost_tests::COMPONENTIZE_PY_TOOL])
            .output()
            .unwrap()
    };

    let o = build("template.wasm");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Neither the kit nor the app's folder gets Python's bytecode.
    assert!(
        !has_pycache(&kit),
        "the build wrote __pycache__ into the kit"
    );

    // `Guest = Counter` instead of `Guest = export(Counter)`: refused at
    // build time, with the fix.
    let app = kit.join("template/app.py");
    let source = std::fs::read_to_string(&app).unwrap();
    assert!(source.contains("Guest = export(Counter)"));
    std::fs::write(
        &app,
        source.replace("Guest = export(Counter)", "Guest = Counter"),
    )
    .unwrap();
    let o = build("bare.wasm");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`Guest = Counter` hands componentize-py the class itself; write `Guest = export(Counter)`"),
        "{err}"
    );
}

/// The policy kit's build, from a copy of the checkout: it writes nothing
/// into the kits, refuses `Heuristic = MyPolicy` with the fix, and explains
/// an app that exports nothing.
#[test]
fn the_policy_build_writes_nothing_into_the_kit_and_explains_missing_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let checkout = tempfile::tempdir().unwrap();
    let kit = checkout.path().join("plugins/python");
    for part in ["edgehost_policy", "template"] {
        copy_tree(&root.join("plugins/python").join(part), &kit.join(part));
    }
    std::fs::copy(root.join("plugins/python/build.py"), kit.join("build.py")).unwrap();
    // The policy kit's build.py runs the agent kit's builder.
    std::fs::create_dir_all(checkout.path().join("agents/python")).unwrap();
    std::fs::copy(
        root.join("agents/python/build.py"),
        checkout.path().join("agents/python/build.py"),
    )
    .unwrap();
    copy_tree(
        &root.join("wit/policy"),
        &checkout.path().join("wit/policy"),
    );
    let build = |out: &str| {
        std::process::Command::new("python3")
            .arg(kit.join("build.py"))
            .arg(kit.join("template"))
            .arg("-o")
            .arg(checkout.path().join(out))
            .args(["--componentize-py", edgehost_tests::COMPONENTIZE_PY_TOOL])
            .output()
            .unwrap()
    };

    let o = build("template.wasm");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !has_pycache(checkout.path()),
        "the build wrote __pycache__ into the checkout"
    );

    let app = kit.join("template/app.py");
    let source = std::fs::read_to_string(&app).unwrap();
    let export = "Heuristic, CostModel = export(LeastLoaded)";
    assert!(source.contains(export));
    std::fs::write(&app, source.replace(export, "Heuristic = LeastLoaded")).unwrap();
    let o = build("bare.wasm");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`Heuristic = LeastLoaded` hands componentize-py the class itself; write `Heuristic, CostModel = export(LeastLoaded)` (from edgehost_policy import export)"),
        "{err}"
    );

    std::fs::write(&app, source.replace(export, "")).unwrap();
    let o = build("none.wasm");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(end it with `Heuristic, CostModel = export(YourPolicy)`)"),
        "{err}"
    );
}
