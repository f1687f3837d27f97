//! A JACK-style client that owns several nodes (issue 5): one process, one PipeWire client,
//! two output nodes that declare no channel positions (no `audio.position`: channel N is the
//! port with `port.id` N-1, as for JACK clients), and which links itself to the hardware on
//! start (JACK's autoconnect to `system:playback_1/2`). The controller must link every
//! routing-table entry for its nodes by ports resolved from the registry (the entries are
//! required: DJ is ready only with them), and destroy the self-made links.
//!
//! The client runs in this test process on its own thread, through the `pipewire` crate. Its
//! format says "unpositioned"; PipeWire's converter still names the ports `output_FL/FR`, which
//! the controller does not rely on: the test derives the expected ports from `port.id`.

mod common;
use common::*;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pipewire as pw;
use pw::spa;

const NODES: [&str; 2] = ["jack-multi-a", "jack-multi-b"];
const CHANNELS: usize = 2;

/// The running client; dropping it ends its thread (and its nodes).
struct MultiNodeClient {
    quit: pw::channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MultiNodeClient {
    fn drop(&mut self) {
        let _ = self.quit.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An unpositioned F32 format with `CHANNELS` channels.
fn format_pod() -> Vec<u8> {
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(48_000);
    info.set_channels(CHANNELS as u32);
    info.set_flags(spa::param::audio::AudioInfoRawFlags::UNPOSITIONED);
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(spa::pod::Object {
            type_: spa::sys::SPA_TYPE_OBJECT_Format,
            id: spa::sys::SPA_PARAM_EnumFormat,
            properties: info.into(),
        }),
    )
    .expect("format pod")
    .0
    .into_inner()
}

/// Starts the client on the stack's PipeWire socket: every node plays a quiet sine and links
/// its outputs 1-2 to `usbstreamer-out` channels 1-2 as soon as the ports exist.
fn start_client(socket: std::path::PathBuf) -> MultiNodeClient {
    let (quit, quit_rx) = pw::channel::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::spawn(move || {
        pw::init();
        let run = || -> Result<(), pw::Error> {
            let mainloop = pw::main_loop::MainLoopRc::new(None)?;
            let context = pw::context::ContextRc::new(&mainloop, None)?;
            let core = context.connect_rc(Some(pw::properties::properties! {
                "remote.name" => socket.display().to_string(),
            }))?;
            let _quit = quit_rx.attach(mainloop.loop_(), {
                let mainloop = mainloop.clone();
                move |()| mainloop.quit()
            });
            let pod = format_pod();
            let mut streams = Vec::new();
            for (k, name) in NODES.iter().enumerate() {
                let stream = pw::stream::StreamRc::new(
                    core.clone(),
                    name,
                    pw::properties::properties! {
                        *pw::keys::MEDIA_TYPE => "Audio",
                        *pw::keys::MEDIA_CATEGORY => "Playback",
                        *pw::keys::NODE_NAME => *name,
                        *pw::keys::NODE_AUTOCONNECT => "false",
                        *pw::keys::APP_NAME => "jack-multi",
                    },
                )?;
                let mut phase = 0f32;
                let hz = 440.0 * (k + 1) as f32;
                let listener = stream
                    .add_local_listener_with_user_data(())
                    .process(move |s, _| {
                        let Some(mut buffer) = s.dequeue_buffer() else {
                            return;
                        };
                        let datas = buffer.datas_mut();
                        let data = &mut datas[0];
                        let stride = 4 * CHANNELS;
                        let mut n = 0;
                        if let Some(bytes) = data.data() {
                            n = bytes.len() / stride;
                            for f in 0..n {
                                let v = 0.1 * phase.sin();
                                phase += 2.0 * std::f32::consts::PI * hz / 48_000.0;
                                for c in 0..CHANNELS {
                                    let o = f * stride + c * 4;
                                    bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
                                }
                            }
                        }
                        let chunk = data.chunk_mut();
                        *chunk.offset_mut() = 0;
                        *chunk.stride_mut() = stride as i32;
                        *chunk.size_mut() = (stride * n) as u32;
                    })
                    .register()?;
                let mut params = [spa::pod::Pod::from_bytes(&pod).expect("pod")];
                stream.connect(
                    spa::utils::Direction::Output,
                    None,
                    pw::stream::StreamFlags::MAP_BUFFERS | pw::stream::StreamFlags::RT_PROCESS,
                    &mut params,
                )?;
                streams.push((stream, listener));
            }
            // Autoconnect like a JACK client: each node's outputs 1-2 to the hardware's 1-2.
            #[derive(Default)]
            struct Seen {
                nodes: HashMap<u32, String>,
                /// (node id, direction, port.id or port.name) -> port id
                ports: Vec<(u32, String, String, String, u32)>,
                done: Vec<(u32, u32)>,
            }
            let seen = Rc::new(RefCell::new(Seen::default()));
            let links = Rc::new(RefCell::new(Vec::new()));
            let registry = core.get_registry_rc()?;
            let _reg = registry
                .add_listener_local()
                .global({
                    let seen = seen.clone();
                    let core = core.clone();
                    let links = links.clone();
                    move |g| {
                        let Some(props) = g.props else { return };
                        let mut s = seen.borrow_mut();
                        match g.type_ {
                            pw::types::ObjectType::Node => {
                                let name = props.get("node.name").unwrap_or("").to_string();
                                s.nodes.insert(g.id, name);
                            }
                            pw::types::ObjectType::Port => {
                                let node = props
                                    .get("node.id")
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(u32::MAX);
                                s.ports.push((
                                    node,
                                    props.get("port.direction").unwrap_or("").into(),
                                    props.get("port.id").unwrap_or("").into(),
                                    props.get("port.name").unwrap_or("").into(),
                                    g.id,
                                ));
                            }
                            _ => return,
                        }
                        let hw = s
                            .nodes
                            .iter()
                            .find(|(_, n)| n.as_str() == "usbstreamer-out")
                            .map(|(id, _)| *id);
                        let Some(hw) = hw else { return };
                        let mut new = Vec::new();
                        for (id, name) in &s.nodes {
                            if !NODES.contains(&name.as_str()) {
                                continue;
                            }
                            for ch in 0..CHANNELS {
                                let out = s
                                    .ports
                                    .iter()
                                    .find(|p| p.0 == *id && p.1 == "out" && p.2 == ch.to_string());
                                let inp = s.ports.iter().find(|p| {
                                    p.0 == hw && p.1 == "in" && p.3 == format!("playback_AUX{ch}")
                                });
                                if let (Some(o), Some(i)) = (out, inp) {
                                    if !s.done.contains(&(o.4, i.4)) {
                                        new.push((*id, o.4, hw, i.4));
                                    }
                                }
                            }
                        }
                        for (on, op, inn, ip) in new {
                            s.done.push((op, ip));
                            let props = pw::properties::properties! {
                                "link.output.node" => on.to_string(),
                                "link.output.port" => op.to_string(),
                                "link.input.node" => inn.to_string(),
                                "link.input.port" => ip.to_string(),
                            };
                            if let Ok(l) =
                                core.create_object::<pw::link::Link>("link-factory", &props)
                            {
                                links.borrow_mut().push(l);
                            }
                        }
                    }
                })
                .register();
            let _ = ready_tx.send(Ok(()));
            mainloop.run();
            drop(streams);
            Ok(())
        };
        if let Err(e) = run() {
            let _ = ready_tx.send(Err(e.to_string()));
        }
    });
    ready_rx
        .recv_timeout(T)
        .expect("client thread answers")
        .expect("client connected");
    MultiNodeClient {
        quit,
        thread: Some(thread),
    }
}

#[test]
fn a_jack_style_client_with_several_nodes_is_linked_by_registry_ports_and_its_own_links_go() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    // Node a feeds the program, node b the headphones: entries by node name and channel.
    let mut config = String::from(BASE_CONFIG);
    for (node, sink) in [(NODES[0], "mugge-program"), (NODES[1], "mugge-headphones")] {
        for ch in 1..=CHANNELS {
            config.push_str(&format!(
                "[[extra.dj]]\nfrom = \"{node}:{ch}\"\nto = \"{sink}:{ch}\"\n"
            ));
        }
    }
    let _ctl = controller(&stack, &config, "controller");
    let p = proxy(&stack).unwrap();
    let destroyed = |p: &mugge_controller::client::ControllerProxyBlocking<'_>| {
        let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
        st["status"]["stats"]["links_destroyed"]
            .as_u64()
            .unwrap_or(0)
    };
    let destroyed_before = destroyed(&p);
    let client = start_client(stack.runtime_dir().join("pipewire-0"));

    // One client, two nodes, ports without positions (JACK-style).
    let g = stack
        .wait_until("both nodes with their ports", T, |g| {
            NODES.iter().all(|n| {
                g.node(n)
                    .is_some_and(|node| g.ports_of(node.id).len() >= CHANNELS)
            })
        })
        .unwrap();
    let a = g.node(NODES[0]).unwrap();
    let b = g.node(NODES[1]).unwrap();
    let client_of = |n: &mugge_testkit::graph::Node| n.props["client.id"].clone();
    assert_eq!(client_of(a), client_of(b), "one client owns both nodes");
    for n in [a, b] {
        assert!(
            !n.props.contains_key("audio.position"),
            "{} declares positions: {:?}",
            n.name,
            n.props.get("audio.position")
        );
    }

    // The table's entries for the client are required: DJ is ready only once they all link.
    let r = p.set_mode("dj").expect("dj ready with the client's routes");
    assert!(r.ready, "{:?}", r.missing);

    // The desired links, by the registry's port of index N-1 (whatever its name), and none of
    // the client's own links to the hardware.
    let want: Vec<(String, String)> = {
        let mut v = Vec::new();
        for (node, sink) in [(NODES[0], "mugge-program"), (NODES[1], "mugge-headphones")] {
            let n = g.node(node).unwrap();
            let mut outs: Vec<_> = g
                .ports_of(n.id)
                .into_iter()
                .filter(|p| p.direction == "output")
                .collect();
            outs.sort_by_key(|p| p.props["port.id"].as_u64());
            for (i, pos) in ["FL", "FR"].iter().enumerate() {
                v.push((
                    format!("{node}:{}", outs[i].name),
                    format!("{sink}:playback_{pos}"),
                ));
            }
        }
        v
    };
    eprintln!("expected client links: {want:?}");
    let mut expected = program_links();
    expected.extend(want.iter().cloned());
    let start = Instant::now();
    let g = wait_links(&stack, &expected, &NODES)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", managed_links(&stack.dump().unwrap(), &NODES)));
    eprintln!(
        "graph as wanted {:?} after SetMode returned",
        start.elapsed()
    );
    // Its self-made links to the hardware were made and destroyed (the controller counts
    // what it destroyed; the graph has none left).
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    let destroyed = destroyed(&p) - destroyed_before;
    eprintln!(
        "links destroyed since the client started: {destroyed}; last destroy {} us after \
         appearance",
        st["status"]["stats"]["last_destroy_us"]
    );
    assert!(
        destroyed >= (NODES.len() * CHANNELS) as u64,
        "the client's {} links to the hardware: {destroyed} destroyed",
        NODES.len() * CHANNELS
    );
    for l in &g.links {
        let from = g.describe_port(l.output_port);
        let to = g.describe_port(l.input_port);
        assert!(
            !(NODES.iter().any(|n| from.starts_with(&format!("{n}:")))
                && to.starts_with("usbstreamer-out:")),
            "self-made link left: {from} -> {to}"
        );
    }
    // Still right a little later (nothing flaps), and the controller is ready.
    std::thread::sleep(Duration::from_millis(300));
    wait_links(&stack, &expected, &NODES).unwrap();
    assert!(p.ready().unwrap(), "{:?}", p.missing());
    drop(client);
}
