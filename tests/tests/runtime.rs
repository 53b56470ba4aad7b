//! The runtime against real guest components: state that survives fresh
//! instances, hostile agents stopped by their limits while others keep
//! serving, bad input refused without harm, and the artifact cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edgehost_runtime::{
    AgentError, AgentInstance, CacheOutcome, Error, Limits, LocalRouter, Runtime, RuntimeBuilder,
    Services,
};
use edgehost_tests::{HOSTILE_AGENT, MEMORY_AGENT, load};

/// A runtime whose cache is shared by all tests of this binary, so each
/// component is compiled once per build, not once per test.
fn runtime_with(limits: Limits) -> Runtime {
    RuntimeBuilder::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-cache"))
        .limits(limits)
        .build()
        .expect("runtime starts")
}

fn runtime() -> Runtime {
    runtime_with(Limits::default())
}

fn start(runtime: &Runtime, path: &str, name: &str) -> AgentInstance {
    let component = load(runtime, path);
    let mut agent = runtime
        .instantiate(&component, name, Services::default())
        .expect("instantiate");
    agent.init(&[]).expect("init");
    agent
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 response")
}

#[test]
fn state_carries_across_fresh_instances() {
    let rt = runtime();
    let mut first = start(&rt, MEMORY_AGENT, "memory");
    assert_eq!(
        text(first.handle(b"remember the cat is Ada").unwrap()),
        "noted #1"
    );
    assert_eq!(
        text(first.handle(b"remember the dog is Bo").unwrap()),
        "noted #2"
    );
    let chat = text(first.handle(b"what are their names?").unwrap());
    assert!(chat.contains("no LLM configured"), "{chat}");
    let blob = first.export_state().unwrap();
    drop(first);

    let mut second = start(&rt, MEMORY_AGENT, "memory");
    assert_eq!(
        text(second.handle(b"stats").unwrap()),
        "notes=0 turns=0 bytes=0"
    );
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

    let mut third = start(&rt, MEMORY_AGENT, "memory");
    third.import_state(&blob2).unwrap();
    assert_eq!(
        text(third.handle(b"stats").unwrap()),
        "notes=3 turns=2 bytes=41"
    );
    // The exported state of an untouched import is the same blob.
    assert_eq!(third.export_state().unwrap(), blob2);
}

#[test]
fn garbage_state_is_refused_and_changes_nothing() {
    let rt = runtime();
    let mut agent = start(&rt, MEMORY_AGENT, "memory");
    agent.handle(b"remember keep me").unwrap();
    let before = agent.export_state().unwrap();

    for garbage in [
        &b""[..],
        b"hello",
        b"EHMEMv1\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &before[..before.len() - 1],
    ] {
        match agent.import_state(garbage) {
            Err(Error::Agent(AgentError::InvalidState(msg))) => assert!(!msg.is_empty()),
            other => panic!("garbage state {garbage:?} gave {other:?}"),
        }
        assert!(agent.poisoned().is_none());
        assert_eq!(agent.export_state().unwrap(), before);
    }
    // Trailing bytes after a valid blob are refused too.
    let mut padded = before.clone();
    padded.push(0);
    assert!(matches!(
        agent.import_state(&padded),
        Err(Error::Agent(AgentError::InvalidState(_)))
    ));
    assert_eq!(text(agent.handle(b"notes").unwrap()), "keep me");
}

#[test]
fn a_looping_agent_is_stopped_and_the_host_keeps_serving() {
    let rt = runtime_with(Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let mut good = start(&rt, MEMORY_AGENT, "good");
    let mut bad = start(&rt, HOSTILE_AGENT, "bad");
    assert_eq!(bad.handle(b"echo hi").unwrap(), b"hi");

    match bad.handle(b"loop") {
        Err(Error::Deadline {
            agent,
            call,
            timeout_ms,
        }) => {
            assert_eq!((agent.as_str(), call, timeout_ms), ("bad", "handle", 200));
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    // The trapped instance refuses further work with a clear reason...
    match bad.handle(b"echo again") {
        Err(Error::Poisoned { agent, reason }) => {
            assert_eq!(agent, "bad");
            assert!(reason.contains("deadline"), "{reason}");
        }
        other => panic!("expected poisoned, got {other:?}"),
    }
    // ...while its neighbour and a fresh instance of the same component serve.
    assert_eq!(
        text(good.handle(b"remember still here").unwrap()),
        "noted #1"
    );
    let mut fresh = start(&rt, HOSTILE_AGENT, "bad-2");
    assert_eq!(fresh.handle(b"echo ok").unwrap(), b"ok");
}

#[test]
fn an_instance_keeps_its_deadline_after_its_runtime_is_gone() {
    let rt = runtime();
    let mut agent = start(&rt, HOSTILE_AGENT, "orphan");
    drop(rt);
    agent.set_timeout(Duration::from_millis(200));
    let err = agent.handle(b"loop").unwrap_err().to_string();
    assert!(err.contains("deadline"), "{err}");
}

#[test]
fn a_memory_bomb_is_refused_at_the_declared_cap() {
    let rt = runtime();
    let mut bad = start(&rt, HOSTILE_AGENT, "bomb");
    assert_eq!(bad.descriptor().demand.memory_mib, 48);
    match bad.handle(b"bomb") {
        Err(Error::MemoryLimit {
            agent,
            cap_mib,
            requested_mib,
            ..
        }) => {
            assert_eq!(agent, "bomb");
            assert_eq!(cap_mib, 48);
            assert!(requested_mib > 48);
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    let mut good = start(&rt, MEMORY_AGENT, "good");
    assert_eq!(
        text(good.handle(b"stats").unwrap()),
        "notes=0 turns=0 bytes=0"
    );
}

#[test]
fn deep_recursion_is_stopped_by_the_stack_limit() {
    let rt = runtime();
    let mut bad = start(&rt, HOSTILE_AGENT, "deep");
    match bad.handle(b"recurse") {
        Err(Error::StackOverflow { agent, call }) => {
            assert_eq!((agent.as_str(), call), ("deep", "handle"))
        }
        other => panic!("expected a stack overflow, got {other:?}"),
    }
}

#[test]
fn oversized_responses_and_requests_are_refused() {
    let rt = runtime_with(Limits {
        max_response_bytes: 1 << 20,
        max_request_bytes: 1 << 16,
        ..Limits::default()
    });
    let mut bad = start(&rt, HOSTILE_AGENT, "huge");
    match bad.handle(b"huge 4") {
        Err(Error::TooLarge { what, size, limit }) => {
            assert_eq!((what, size, limit), ("response", 4 << 20, 1 << 20));
        }
        other => panic!("expected too large, got {other:?}"),
    }
    let big_request = vec![b'e'; (1 << 16) + 1];
    assert!(matches!(
        bad.handle(&big_request),
        Err(Error::TooLarge {
            what: "request",
            ..
        })
    ));
    // Refusing a payload is not a trap: the agent keeps serving.
    assert_eq!(bad.handle(b"echo fine").unwrap(), b"fine");
}

#[test]
fn malformed_components_are_refused_with_a_clear_error() {
    let rt = runtime();
    let empty_component = b"\0asm\x0d\0\x01\0";
    let core_module = b"\0asm\x01\0\0\0";
    let cases: [(&[u8], &str); 4] = [
        (b"definitely not wasm", "not a WebAssembly file"),
        (core_module, "core WebAssembly module"),
        (b"\0asm\x0d\0\x01\0\x07\xff", "invalid component"),
        (
            empty_component,
            "does not export edgehost:agent/guest@0.1.0",
        ),
    ];
    for (bytes, expected) in cases {
        match rt.load(bytes) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(expected),
                    "{msg:?} should mention {expected:?}"
                );
                assert!(!msg.contains('\n'), "one line: {msg:?}");
            }
            Ok(_) => panic!("{bytes:?} loaded"),
        }
    }
}

#[test]
fn the_second_load_hits_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let rt = RuntimeBuilder::new(dir.path().join("cache"))
        .build()
        .unwrap();
    let first = load(&rt, MEMORY_AGENT);
    assert_eq!(first.cache_outcome(), CacheOutcome::Miss);
    let second = load(&rt, MEMORY_AGENT);
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(first.digest(), second.digest());

    // Another runtime on the same directory (a restarted host) hits too.
    drop(rt);
    let rt = RuntimeBuilder::new(dir.path().join("cache"))
        .build()
        .unwrap();
    let third = load(&rt, MEMORY_AGENT);
    assert_eq!(third.cache_outcome(), CacheOutcome::Hit);
    let mut agent = rt.instantiate(&third, "m", Services::default()).unwrap();
    agent.init(&[]).unwrap();
    assert_eq!(text(agent.handle(b"remember x").unwrap()), "noted #1");

    // A damaged artifact is discarded and rebuilt, never trusted. (It is
    // replaced by rename, as the cache itself writes: rewriting a file in
    // place under a live mapping is something no part of edgehost does.)
    let artifact = rt.cache().path(&third.digest());
    drop((agent, third, second, first));
    let damaged = dir.path().join("damaged");
    std::fs::write(&damaged, b"not an artifact").unwrap();
    std::fs::rename(&damaged, &artifact).unwrap();
    let fourth = load(&rt, MEMORY_AGENT);
    assert_eq!(fourth.cache_outcome(), CacheOutcome::Miss);
    assert_eq!(load(&rt, MEMORY_AGENT).cache_outcome(), CacheOutcome::Hit);
}

#[test]
fn calls_route_only_to_declared_dependencies() {
    let rt = runtime();
    let router = Arc::new(LocalRouter::new());
    let services = Services {
        router: router.clone(),
        ..Services::default()
    };
    let memory = load(&rt, MEMORY_AGENT);
    let mut m = rt.instantiate(&memory, "memory", services.clone()).unwrap();
    m.init(&[]).unwrap();
    let memory_handle = router.insert(m);

    let hostile = load(&rt, HOSTILE_AGENT);
    let mut caller = rt.instantiate(&hostile, "caller", services).unwrap();
    caller.init(&[]).unwrap();
    assert_eq!(
        text(caller.handle(b"call memory remember routed").unwrap()),
        "noted #1"
    );
    let notes = memory_handle.lock().unwrap().handle(b"notes").unwrap();
    assert_eq!(text(notes), "routed");

    // Not a declared dependency: refused by the host, reported by the agent.
    match caller.handle(b"call other hello") {
        Err(Error::Agent(AgentError::Unavailable(msg))) => {
            assert!(msg.contains("not among the dependencies"), "{msg}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_hundred_agents_live_in_one_host() {
    let rt = runtime();
    let component = load(&rt, MEMORY_AGENT);
    let mut agents: Vec<AgentInstance> = (0..100)
        .map(|i| {
            let mut a = rt
                .instantiate(&component, &format!("agent-{i}"), Services::default())
                .unwrap();
            a.init(&[]).unwrap();
            a
        })
        .collect();
    for (i, a) in agents.iter_mut().enumerate() {
        a.handle(format!("remember I am {i}").as_bytes()).unwrap();
    }
    for (i, a) in agents.iter_mut().enumerate() {
        assert_eq!(text(a.handle(b"notes").unwrap()), format!("I am {i}"));
    }
}

#[test]
fn declarations_beyond_the_host_ceiling_are_refused() {
    let rt = runtime_with(Limits {
        max_memory_mib: 32,
        ..Limits::default()
    });
    let component = load(&rt, MEMORY_AGENT);
    match rt.instantiate(&component, "m", Services::default()) {
        Err(Error::Refused(msg)) => assert!(msg.contains("64 MiB"), "{msg}"),
        Err(e) => panic!("expected refusal, got {e}"),
        Ok(_) => panic!("expected refusal, got an instance"),
    }
}

/// Little-endian bytes of `words` as a WAT string literal's contents.
fn wat_words(words: &[u32]) -> String {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A real agent component whose core module has four linear memories: the
/// one the canonical ABI uses (one page) and three more, empty at first.
/// It declares `memory_mib` MiB; each `handle` grows the next of the three
/// extra memories by `grow_pages` pages (64 KiB each), touches its last
/// byte and answers "ok".
fn multi_memory_agent(memory_mib: u32, grow_pages: u32) -> Vec<u8> {
    // The descriptor `describe` returns, at 64: kind "multi" (at 16),
    // version "1.0" (at 32), the demand, no dependencies. The answer of
    // `handle` and `export-state`, at 160: ok, "ok" (at 48). At 128, zeros:
    // the ok of `init` and `import-state`.
    let descriptor = wat_words(&[16, 5, 32, 3, memory_mib, 100, 0, 0, 0, 0]);
    let answer = wat_words(&[0, 48, 2]);
    let grow = |memory: u32| {
        format!(
            "(if (i32.eq (memory.grow {memory} (i32.const {grow_pages})) (i32.const -1))
               (then unreachable))
             (i32.store8 {memory} (i32.sub (i32.mul (memory.size {memory}) (i32.const 65536)) (i32.const 1))
               (i32.const 1))"
        )
    };
    let (grow1, grow2, grow3) = (grow(1), grow(2), grow(3));
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (memory 0)
  (memory 0)
  (memory 0)
  (global $heap (mut i32) (i32.const 1024))
  (global $next (mut i32) (i32.const 0))
  (data (memory 0) (i32.const 16) "multi")
  (data (memory 0) (i32.const 32) "1.0")
  (data (memory 0) (i32.const 48) "ok")
  (data (memory 0) (i32.const 64) "{descriptor}")
  (data (memory 0) (i32.const 160) "{answer}")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size 0) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow 0 (i32.sub (i32.shr_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 16))
                                      (memory.size 0)))
              (i32.const -1))
          (then unreachable))))
    (local.get $at))
  (func (export "edgehost:agent/guest@0.1.0#describe") (result i32)
    (i32.const 64))
  (func (export "edgehost:agent/guest@0.1.0#init") (param i32 i32) (result i32)
    (i32.const 128))
  (func (export "edgehost:agent/guest@0.1.0#handle") (param i32 i32 i32 i32 i32) (result i32)
    (block $done
      (block $third
        (block $second
          (block $first
            (br_table $first $second $third $done (global.get $next)))
          {grow1}
          (br $done))
        {grow2}
        (br $done))
      {grow3})
    (global.set $next (i32.add (global.get $next) (i32.const 1)))
    (i32.const 160))
  (func (export "edgehost:agent/guest@0.1.0#export-state") (result i32)
    (i32.const 160))
  (func (export "edgehost:agent/guest@0.1.0#import-state") (param i32 i32) (result i32)
    (i32.const 128))
)"#
    );
    let mut module = wat::parse_str(&wat).expect("the agent's WAT parses");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/agent"))
        .expect("the agent WIT parses");
    let world = resolve
        .select_world(&[package], Some("agent"))
        .expect("the agent world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embedding the agent world");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("a module of the agent world")
        .validate(true)
        .encode()
        .expect("encoding the component")
}

#[test]
fn an_agent_with_several_memories_cannot_exceed_its_cap_in_total() {
    let rt = runtime();
    // 4 MiB declared; one page in the first memory, then 1.5 MiB more in
    // each of three others. Each memory alone stays far below the cap; the
    // third growth takes the store to 4.5625 MiB in all.
    let component = rt
        .load(&multi_memory_agent(4, 24))
        .expect("the multi-memory agent loads");
    let mut agent = rt
        .instantiate(&component, "many", Services::default())
        .expect("instantiate");
    assert_eq!(agent.descriptor().demand.memory_mib, 4);
    agent.init(&[]).expect("init");
    assert_eq!(agent.handle(b"grow").expect("1.5625 MiB in all"), b"ok");
    assert_eq!(agent.handle(b"grow").expect("3.0625 MiB in all"), b"ok");
    match agent.handle(b"grow") {
        Err(Error::MemoryLimit {
            agent,
            call,
            cap_mib,
            requested_mib,
        }) => {
            assert_eq!((agent.as_str(), call), ("many", "handle"));
            assert_eq!((cap_mib, requested_mib), (4, 5));
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    assert!(agent.poisoned().is_some_and(|r| r.contains("memory")));

    // The same agent with a cap its memories fit in together serves on.
    let component = rt
        .load(&multi_memory_agent(5, 24))
        .expect("the multi-memory agent loads");
    let mut roomy = rt
        .instantiate(&component, "roomy", Services::default())
        .expect("instantiate");
    roomy.init(&[]).expect("init");
    for _ in 0..3 {
        assert_eq!(roomy.handle(b"grow").expect("within 5 MiB"), b"ok");
    }
}

/// A component may declare the one architecture it runs on: a host of
/// another refuses it, on one line (a client may still load it, to read
/// its declaration), and one of its own runs it.
#[test]
fn a_component_that_requires_another_architecture_is_refused_on_load() {
    use edgehost_runtime::{ComponentInfo, REQUIRES_ARCH_SECTION};
    use edgehost_tests::with_custom_section;

    let rt = runtime();
    let bytes = std::fs::read(MEMORY_AGENT).unwrap();
    let other = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "aarch64"
    };
    let foreign = with_custom_section(&bytes, REQUIRES_ARCH_SECTION, other.as_bytes());
    let info = ComponentInfo::read(&foreign).unwrap();
    assert_eq!(info.requires_arch.as_deref(), Some(other));
    let err = info.expect_arch().expect_err("a foreign agent is refused");
    assert!(matches!(err, Error::Architecture { .. }), "{err}");
    let err = rt
        .load_native(&foreign)
        .err()
        .expect("refused before compiling");
    assert!(matches!(err, Error::Architecture { .. }), "{err}");
    assert!(
        rt.load(&foreign).is_ok(),
        "its declaration can still be read"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the agent requires {other}; this host is {}",
            std::env::consts::ARCH
        )
    );

    // Declaring this host's own architecture runs as before.
    let native = with_custom_section(
        &bytes,
        REQUIRES_ARCH_SECTION,
        std::env::consts::ARCH.as_bytes(),
    );
    let component = rt.load(&native).unwrap();
    let mut agent = rt
        .instantiate(&component, "native", Services::default())
        .unwrap();
    agent.init(&[]).unwrap();
    assert_eq!(agent.requires_arch(), Some(std::env::consts::ARCH));
    assert_eq!(text(agent.handle(b"remember here").unwrap()), "noted #1");

    // A declaration that is not an architecture name is a malformed component.
    let garbage = with_custom_section(&bytes, REQUIRES_ARCH_SECTION, b"arm/v7 \xff");
    assert!(matches!(
        ComponentInfo::read(&garbage),
        Err(Error::Malformed(m)) if m.contains("not an architecture name")
    ));
    // Without the section, a component runs anywhere.
    assert_eq!(ComponentInfo::read(&bytes).unwrap().requires_arch, None);
}
