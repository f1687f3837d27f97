//! The one PipeWire connection, in its own thread running the PipeWire main loop.
//!
//! Registry events update the observed graph; after each event (once the initial enumeration
//! is through) the reconciler runs and its operations are sent at once, so an undesired link is
//! destroyed within one main-loop turn of its appearance. Commands arrive through a
//! `pipewire::channel`; status goes out through an async channel only when it changed.
//! Nothing here polls: the thread sleeps in the loop until PipeWire or a command wakes it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use pipewire as pw;
use pw::proxy::ProxyT;
use pw::types::ObjectType;

use super::graph::{Direction, Graph, Link, Node, Port};
use super::levels::Levels;
use super::reconcile::{reconcile, Desired, InFlight, NewLink, Plan};
use super::routing::{self, PluginNode};
use super::status::{Stats, Status};

/// Linux's EPIPE: PipeWire's "connection lost" on the core (no libc dependency for one number).
const EPIPE: i32 = 32;

/// Commands from the service to the PipeWire thread.
pub enum Command {
    /// A new desired state; `generation` increases with every SetMode.
    Apply {
        generation: u64,
        desired: Desired,
        quantum: u32,
        /// Components reported in Health.
        components: Vec<String>,
    },
    /// Resets the clip latches of a meter node; the reply says why not when it cannot.
    ResetClip {
        meter: String,
        reply: async_channel::Sender<Result<(), String>>,
    },
    /// Subscribe to (true) or drop (false) the meters' Props: snapshots cost a wake-up each
    /// (~30 Hz per meter), so they flow only while someone reads levels over D-Bus.
    WantLevels(bool),
    /// Reads a node's numeric Props controls (`ch<N>_gain:Mult`, ...): what a chain left
    /// running by a previous controller plays at.
    ReadControls {
        node: String,
        reply: std::sync::mpsc::Sender<Result<Vec<(String, f32)>, String>>,
    },
    /// Internal: drop idle meter proxies outside their own callbacks.
    UnbindIdleMeters,
    Quit,
    /// Sets filter-graph controls (`ch<N>_gain:Mult`, ...) in the Props of node `node`;
    /// the reply says whether the node was there to take them.
    SetControls {
        node: String,
        controls: Vec<(String, f32)>,
        reply: Option<std::sync::mpsc::Sender<Result<(), String>>>,
    },
    /// Sets typed custom `Props` keys of node `node` (the generator's `siggen.*`).
    SetProps {
        node: String,
        params: Vec<(String, super::props::PropValue)>,
        reply: Option<std::sync::mpsc::Sender<Result<(), String>>>,
    },
}

type ControlsReply = std::sync::mpsc::Sender<Result<Vec<(String, f32)>, String>>;

pub struct PwHandle {
    pub commands: pw::channel::Sender<Command>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the PipeWire thread. `status` receives a fresh `Status` whenever it changes.
pub fn spawn(
    status: async_channel::Sender<Status>,
    levels: async_channel::Sender<(String, Levels)>,
) -> PwHandle {
    let (tx, rx) = pw::channel::channel::<Command>();
    let own = tx.clone();
    let thread = std::thread::Builder::new()
        .name("mugge-pw".into())
        .spawn(move || {
            // A dead PipeWire thread would leave a daemon that answers D-Bus but manages
            // nothing: end the process instead, so its supervisor restarts it (links linger).
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(rx, own, status, levels)
            }))
            .is_err()
            {
                std::process::abort();
            }
        })
        .expect("spawn PipeWire thread");
    PwHandle {
        commands: tx,
        thread,
    }
}

struct Conn {
    core: pw::core::CoreRc,
    registry: pw::registry::RegistryRc,
    _core_listener: pw::core::Listener,
    _registry_listener: pw::registry::Listener,
    nodes: HashMap<u32, (pw::node::Node, pw::node::NodeListener)>,
    /// Client id -> process id (`pipewire.sec.pid`): whose process a filter-chain is.
    clients: HashMap<u32, u32>,
    settings: Option<(pw::metadata::Metadata, pw::metadata::MetadataListener)>,
    pending_links: HashMap<(u32, u32), (pw::link::Link, pw::proxy::ProxyListener)>,
    pending_nodes: HashMap<String, (pw::node::Node, pw::proxy::ProxyListener)>,
    /// Meter nodes' globals, to bind them again when levels are wanted.
    meter_globals: HashMap<u32, pw::registry::GlobalObject<pw::properties::PropertiesBox>>,
}

struct Engine {
    graph: Graph,
    desired: Desired,
    generation: u64,
    quantum_wanted: Option<u32>,
    quantum_seen: Option<u32>,
    components: Vec<String>,
    inflight: InFlight,
    /// Failures are not retried until the next Apply or until the ports change.
    failed_links: HashMap<(u32, u32), String>,
    failed_nodes: HashMap<String, String>,
    synced: bool,
    /// Set from the core error callback without borrowing the engine: that callback can run
    /// inside an engine method (a failed write while sending a request).
    disconnected: Rc<std::cell::Cell<bool>>,
    conn: Option<Conn>,
    status_tx: async_channel::Sender<Status>,
    levels_tx: async_channel::Sender<(String, Levels)>,
    levels_wanted: bool,
    /// ReadControls waiting for a node's Props param.
    controls_wanted: HashMap<u32, (Vec<(String, f32)>, ControlsReply)>,
    /// The core sync that ends each ReadControls (node id).
    controls_sync: Vec<(pw::spa::utils::result::AsyncSeq, u32)>,
    /// Our own command channel, for work deferred to the next loop turn.
    commands: Option<pw::channel::Sender<Command>>,
    last_status: Option<Status>,
    link_seen_at: HashMap<u32, Instant>,
    stats: Stats,
    weak: Weak<RefCell<Engine>>,
}

fn run(
    rx: pw::channel::Receiver<Command>,
    own: pw::channel::Sender<Command>,
    status_tx: async_channel::Sender<Status>,
    levels_tx: async_channel::Sender<(String, Levels)>,
) {
    pw::init();
    let mainloop = pw::main_loop::MainLoopRc::new(None).expect("PipeWire main loop");
    let context = pw::context::ContextRc::new(&mainloop, None).expect("PipeWire context");
    let engine = Rc::new_cyclic(|weak| {
        RefCell::new(Engine {
            graph: Graph::default(),
            desired: Desired::default(),
            generation: 0,
            quantum_wanted: None,
            quantum_seen: None,
            components: Vec::new(),
            inflight: InFlight::default(),
            failed_links: HashMap::new(),
            failed_nodes: HashMap::new(),
            synced: false,
            disconnected: Rc::new(std::cell::Cell::new(false)),
            conn: None,
            status_tx,
            levels_tx,
            levels_wanted: false,
            commands: Some(own),
            controls_wanted: HashMap::new(),
            controls_sync: Vec::new(),
            last_status: None,
            link_seen_at: HashMap::new(),
            stats: Stats::default(),
            weak: weak.clone(),
        })
    });
    let quit = Rc::new(std::cell::Cell::new(false));
    let _rx = rx.attach(mainloop.loop_(), {
        let engine = engine.clone();
        let mainloop = mainloop.clone();
        let quit = quit.clone();
        move |cmd| match cmd {
            Command::Apply {
                generation,
                desired,
                quantum,
                components,
            } => {
                let mut e = engine.borrow_mut();
                e.generation = generation;
                e.desired = desired;
                e.quantum_wanted = Some(quantum);
                e.components = components;
                e.failed_links.clear();
                e.failed_nodes.clear();
                e.apply_quantum();
                e.step();
            }
            Command::SetControls {
                node,
                controls,
                reply,
            } => {
                let r = engine.borrow().set_controls(&node, &controls);
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            Command::SetProps {
                node,
                params,
                reply,
            } => {
                let bytes = super::props::values_pod(&params);
                let r = engine.borrow().set_pod(&node, &bytes);
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            Command::ResetClip { meter, reply } => {
                let _ = reply.try_send(engine.borrow().reset_clip(&meter));
            }
            Command::WantLevels(want) => engine.borrow_mut().want_levels(want),
            Command::ReadControls { node, reply } => {
                engine.borrow_mut().read_controls(&node, reply)
            }
            Command::UnbindIdleMeters => engine.borrow_mut().unbind_idle_meters(),
            Command::Quit => {
                quit.set(true);
                mainloop.quit();
            }
        }
    });

    while !quit.get() {
        match connect(&context, &engine, &mainloop) {
            Ok(conn) => {
                engine.borrow_mut().conn = Some(conn);
                tracing::info!("connected to PipeWire");
                mainloop.run();
            }
            Err(e) => tracing::warn!("cannot connect to PipeWire: {e}"),
        }
        {
            let mut e = engine.borrow_mut();
            e.conn = None;
            e.graph = Graph::default();
            e.inflight = InFlight::default();
            e.synced = false;
            e.disconnected.set(false);
            e.quantum_seen = None;
            e.link_seen_at.clear();
            e.publish();
        }
        if quit.get() {
            break;
        }
        // Only while PipeWire is away: wait before trying to reconnect. Commands queue up in
        // the channel and are handled once the loop runs again.
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn connect(
    context: &pw::context::ContextRc,
    engine: &Rc<RefCell<Engine>>,
    mainloop: &pw::main_loop::MainLoopRc,
) -> Result<Conn, pw::Error> {
    let core = context.connect_rc(None)?;
    let registry = core.get_registry_rc()?;
    let pending = core.sync(0)?;
    let core_listener = core
        .add_listener_local()
        .done({
            let engine = Rc::downgrade(engine);
            move |id, seq| {
                if id != pw::core::PW_ID_CORE {
                    return;
                }
                let Some(e) = engine.upgrade() else { return };
                let mut e = e.borrow_mut();
                if seq == pending {
                    e.synced = true;
                    e.step();
                } else if let Some(k) = e.controls_sync.iter().position(|(s, _)| *s == seq) {
                    let (_, node) = e.controls_sync.remove(k);
                    if let Some((controls, reply)) = e.controls_wanted.remove(&node) {
                        let _ = reply.send(Ok(controls));
                    }
                }
            }
        })
        .error({
            let disconnected = engine.borrow().disconnected.clone();
            let mainloop = mainloop.downgrade();
            move |id, _seq, res, msg| {
                // Only -EPIPE on the core means the connection is gone. The server reports a
                // request to an object that just vanished on the core too ("unknown resource",
                // -ENOENT): reconnecting for that would drop every node and link we own in the
                // middle of, e.g., a measurement's abort.
                if id == pw::core::PW_ID_CORE && res == -EPIPE {
                    tracing::warn!("PipeWire connection error {res}: {msg}");
                    disconnected.set(true);
                    if let Some(l) = mainloop.upgrade() {
                        l.quit();
                    }
                } else {
                    tracing::debug!("PipeWire error on object {id}: {res} {msg}");
                }
            }
        })
        .register();
    let registry_listener = registry
        .add_listener_local()
        .global({
            let engine = Rc::downgrade(engine);
            move |global| {
                if let Some(e) = engine.upgrade() {
                    let mut e = e.borrow_mut();
                    e.on_global(global);
                }
            }
        })
        .global_remove({
            let engine = Rc::downgrade(engine);
            move |id| {
                if let Some(e) = engine.upgrade() {
                    e.borrow_mut().on_remove(id);
                }
            }
        })
        .register();
    Ok(Conn {
        core,
        registry,
        _core_listener: core_listener,
        _registry_listener: registry_listener,
        nodes: HashMap::new(),
        clients: HashMap::new(),
        settings: None,
        pending_links: HashMap::new(),
        pending_nodes: HashMap::new(),
        meter_globals: HashMap::new(),
    })
}

fn prop_u32(props: &pw::spa::utils::dict::DictRef, key: &str) -> Option<u32> {
    props.get(key).and_then(|v| v.parse().ok())
}

impl Engine {
    fn on_global(&mut self, global: &pw::registry::GlobalObject<&pw::spa::utils::dict::DictRef>) {
        let Some(props) = global.props else { return };
        let id = global.id;
        match global.type_ {
            ObjectType::Node => {
                let name = props.get("node.name").unwrap_or("").to_string();
                let node = Node {
                    id,
                    name: name.clone(),
                    media_class: props.get("media.class").unwrap_or("").to_string(),
                    props: BTreeMap::new(),
                    info: false,
                };
                self.graph.nodes.insert(id, node);
                self.inflight.nodes.remove(&name);
                if let Some(conn) = self.conn.as_mut() {
                    conn.pending_nodes.remove(&name);
                    if name.starts_with("mugge-meter-") {
                        conn.meter_globals.insert(id, global.to_owned());
                    }
                }
                self.bind_node(global, &name);
            }
            ObjectType::Port => {
                let (Some(node), Some(index)) =
                    (prop_u32(props, "node.id"), prop_u32(props, "port.id"))
                else {
                    return;
                };
                let direction = match props.get("port.direction") {
                    Some("in") => Direction::In,
                    Some("out") => Direction::Out,
                    _ => return,
                };
                self.graph.ports.insert(
                    id,
                    Port {
                        id,
                        node,
                        direction,
                        index,
                        channel: props.get("audio.channel").map(str::to_string),
                        monitor: props.get("port.monitor") == Some("true"),
                        name: props.get("port.name").unwrap_or("").to_string(),
                    },
                );
                // PipeWire reuses global ids: a link that failed against a port that has gone
                // (its error can arrive after the removal) must not block the new port's link.
                self.failed_links.retain(|(o, i), _| *o != id && *i != id);
                self.step();
            }
            ObjectType::Link => {
                let ids = (
                    prop_u32(props, "link.output.node"),
                    prop_u32(props, "link.output.port"),
                    prop_u32(props, "link.input.node"),
                    prop_u32(props, "link.input.port"),
                );
                let (Some(out_node), Some(out_port), Some(in_node), Some(in_port)) = ids else {
                    return;
                };
                self.graph.links.insert(
                    id,
                    Link {
                        id,
                        out_node,
                        out_port,
                        in_node,
                        in_port,
                    },
                );
                self.link_seen_at.insert(id, Instant::now());
                self.inflight.links.remove(&(out_port, in_port));
                if let Some(conn) = self.conn.as_mut() {
                    // object.linger keeps the link when the proxy goes.
                    conn.pending_links.remove(&(out_port, in_port));
                }
                self.step();
            }
            ObjectType::Client => {
                // The socket's credentials (global props) before what the client says.
                let pid = prop_u32(props, "pipewire.sec.pid")
                    .or_else(|| prop_u32(props, "application.process.id"));
                if let (Some(pid), Some(conn)) = (pid, self.conn.as_mut()) {
                    conn.clients.insert(id, pid);
                    self.publish();
                }
            }
            ObjectType::Metadata if props.get("metadata.name") == Some("settings") => {
                let Some(conn) = self.conn.as_mut() else {
                    return;
                };
                if let Ok(md) = conn.registry.bind::<pw::metadata::Metadata, _>(global) {
                    let weak = self.weak.clone();
                    let listener = md
                        .add_listener_local()
                        .property(move |subject, key, _type, value| {
                            if subject == 0 && key == Some("clock.force-quantum") {
                                if let Some(e) = weak.upgrade() {
                                    let mut e = e.borrow_mut();
                                    e.quantum_seen =
                                        value.and_then(|v| v.parse().ok()).filter(|q| *q != 0);
                                    e.step();
                                }
                            }
                            0
                        })
                        .register();
                    conn.settings = Some((md, listener));
                    self.apply_quantum();
                }
            }
            _ => {}
        }
    }

    fn on_remove(&mut self, id: u32) {
        if let Some(seen) = self.link_seen_at.remove(&id) {
            if self.inflight.destroyed.contains(&id) {
                let us = seen.elapsed().as_micros() as u64;
                self.stats.last_destroy_us = Some(us);
                self.stats.max_destroy_us = Some(self.stats.max_destroy_us.unwrap_or(0).max(us));
                tracing::info!("undesired link {id} gone {us} us after it appeared");
            }
        }
        if let Some(p) = self.graph.ports.get(&id) {
            let port = p.id;
            self.failed_links
                .retain(|(o, i), _| *o != port && *i != port);
        }
        self.graph.remove(id);
        self.inflight.destroyed.remove(&id);
        if let Some(conn) = self.conn.as_mut() {
            conn.nodes.remove(&id);
            conn.clients.remove(&id);
            conn.meter_globals.remove(&id);
        }
        self.step();
    }

    /// Binds a node for its full properties (positions, mugge.*) and, for meters, their
    /// snapshots (Props params).
    fn bind_node<P: AsRef<pw::spa::utils::dict::DictRef>>(
        &mut self,
        global: &pw::registry::GlobalObject<P>,
        name: &str,
    ) {
        let id = global.id;
        let meter = name.starts_with("mugge-meter-");
        let levels_wanted = self.levels_wanted;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Ok(proxy) = conn.registry.bind::<pw::node::Node, _>(global) else {
            return;
        };
        let weak = self.weak.clone();
        let builder = proxy.add_listener_local();
        // Meters publish snapshots as Props: subscribe, parse, forward. The engine is not
        // involved (no borrow, no reconcile).
        let builder = if meter {
            if levels_wanted {
                proxy.subscribe_params(&[pw::spa::param::ParamType::Props]);
            }
            let tx = self.levels_tx.clone();
            let meter = name.to_string();
            builder.param(move |_seq, _id, _index, _next, pod| {
                if let Some(l) = pod.and_then(super::levels::parse_pod) {
                    let _ = tx.try_send((meter.clone(), l));
                }
            })
        } else {
            // Answers to ReadControls (enum_params Props).
            let weak = self.weak.clone();
            builder.param(move |_seq, _id, _index, _next, pod| {
                let Some(e) = weak.upgrade() else { return };
                let Ok(mut e) = e.try_borrow_mut() else {
                    return;
                };
                // A node can have several Props params (the adapter's, the filter graph's):
                // collected until the core's answer to the sync sent after the request.
                if let Some((controls, _)) = e.controls_wanted.get_mut(&id) {
                    if let Some(p) = pod {
                        controls.extend(super::props::parse_controls(p.as_bytes()));
                    }
                }
            })
        };
        let commands = self.commands.clone();
        let listener = builder
            .info(move |info| {
                // Only props matter here. Params-only infos come with every meter snapshot
                // (~30 Hz per meter) to every proxy bound to it: no reconcile for them, and
                // no binding at all while nobody reads levels (see `unbind_idle_meters`).
                if !info.change_mask().contains(pw::node::NodeChangeMask::PROPS) {
                    return;
                }
                let Some(e) = weak.upgrade() else { return };
                let mut e = e.borrow_mut();
                if let Some(n) = e.graph.nodes.get_mut(&id) {
                    // Only an info that says its props changed carries them.
                    if let Some(p) = info.props() {
                        n.props = p
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                    }
                    n.info = true;
                }
                if meter && !e.levels_wanted {
                    // Not from inside this proxy's own callback: on the next loop turn.
                    if let Some(tx) = commands.as_ref() {
                        let _ = tx.send(Command::UnbindIdleMeters);
                    }
                }
                e.step();
            })
            .register();
        conn.nodes.insert(id, (proxy, listener));
    }

    /// Drops the proxies of meters whose properties are known while nobody reads levels: a
    /// bound meter sends an info event with every snapshot (~30 Hz), subscribed or not, and
    /// those were an idle controller's only wake-ups.
    fn unbind_idle_meters(&mut self) {
        if self.levels_wanted {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let graph = &self.graph;
        conn.nodes.retain(|id, _| {
            !(conn.meter_globals.contains_key(id) && graph.nodes.get(id).is_some_and(|n| n.info))
        });
    }

    fn want_levels(&mut self, want: bool) {
        self.levels_wanted = want;
        if !want {
            self.unbind_idle_meters();
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let mut unbound = Vec::new();
        for (id, global) in &conn.meter_globals {
            match conn.nodes.get(id) {
                Some((proxy, _)) => proxy.subscribe_params(&[pw::spa::param::ParamType::Props]),
                None => unbound.push(global.to_owned()),
            }
        }
        for g in unbound {
            let name = self
                .graph
                .nodes
                .get(&g.id)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            self.bind_node(&g, &name);
        }
    }

    fn read_controls(
        &mut self,
        node: &str,
        reply: std::sync::mpsc::Sender<Result<Vec<(String, f32)>, String>>,
    ) {
        let found = (|| {
            let conn = self.conn.as_ref().ok_or("not connected to PipeWire")?;
            let n = self
                .graph
                .node_named(node)
                .ok_or_else(|| format!("node {node} is not in the graph"))?;
            let (proxy, _) = conn
                .nodes
                .get(&n.id)
                .ok_or_else(|| format!("node {node} is not bound"))?;
            proxy.enum_params(0, Some(pw::spa::param::ParamType::Props), 0, u32::MAX);
            let seq = conn.core.sync(0).map_err(|e| e.to_string())?;
            Ok::<_, String>((n.id, seq))
        })();
        match found {
            Ok((id, seq)) => {
                self.controls_wanted.insert(id, (Vec::new(), reply));
                self.controls_sync.push((seq, id));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn reset_clip(&self, meter: &str) -> Result<(), String> {
        let conn = self.conn.as_ref().ok_or("not connected to PipeWire")?;
        let node = self
            .graph
            .node_named(meter)
            .ok_or_else(|| format!("meter {meter} is not running"))?;
        let (proxy, _) = conn
            .nodes
            .get(&node.id)
            .ok_or_else(|| format!("meter {meter} is not bound yet"))?;
        let bytes = super::levels::reset_clip_pod();
        let pod = pw::spa::pod::Pod::from_bytes(&bytes).ok_or("cannot build the reset pod")?;
        proxy.set_param(pw::spa::param::ParamType::Props, 0, pod);
        Ok(())
    }

    fn apply_quantum(&mut self) {
        let (Some(q), Some(conn)) = (self.quantum_wanted, self.conn.as_ref()) else {
            return;
        };
        if self.quantum_seen == Some(q) {
            return;
        }
        if let Some((md, _)) = conn.settings.as_ref() {
            md.set_property(
                0,
                "clock.force-quantum",
                Some("Spa:Int"),
                Some(&q.to_string()),
            );
        }
    }

    /// Reconciles and acts, then publishes the status.
    fn step(&mut self) {
        // Generation 0: no desired state yet. Acting on an empty table would tear down the
        // graph a previous run left; wait for the first Apply.
        if !self.synced || self.conn.is_none() || self.disconnected.get() || self.generation == 0 {
            self.publish();
            return;
        }
        // A failure about ports that have gone since (a client quit while we linked it) is
        // history, not a reason to hold back readiness.
        let ports = &self.graph.ports;
        self.failed_links
            .retain(|(o, i), _| ports.contains_key(o) && ports.contains_key(i));
        let mut inflight = self.inflight.clone();
        inflight.links.extend(self.failed_links.keys().copied());
        inflight.nodes.extend(self.failed_nodes.keys().cloned());
        let plan = reconcile(&self.desired, &self.graph, &inflight);
        self.act(&plan);
        self.publish_plan(plan);
    }

    fn act(&mut self, plan: &Plan) {
        for &id in plan.destroy_links.iter().chain(&plan.destroy_nodes) {
            if self.inflight.destroyed.insert(id) {
                let conn = self.conn.as_ref().expect("connected");
                let _ = conn.registry.destroy_global(id);
                if self.graph.links.contains_key(&id) {
                    self.stats.links_destroyed += 1;
                    tracing::info!("destroying link {id}");
                } else {
                    self.stats.nodes_destroyed += 1;
                    tracing::info!("destroying node {id}");
                }
            }
        }
        for l in &plan.create_links {
            self.create_link(l);
        }
        for n in &plan.create_nodes {
            self.create_node(n);
        }
    }

    fn create_link(&mut self, l: &NewLink) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut props = pw::properties::PropertiesBox::new();
        props.insert("link.output.node", l.out_node.to_string());
        props.insert("link.output.port", l.out_port.to_string());
        props.insert("link.input.node", l.in_node.to_string());
        props.insert("link.input.port", l.in_port.to_string());
        // Links outlive the controller: audio keeps flowing if it dies.
        props.insert("object.linger", "true");
        let key = (l.out_port, l.in_port);
        match conn
            .core
            .create_object::<pw::link::Link>("link-factory", &props)
        {
            Ok(link) => {
                let weak = self.weak.clone();
                let label = format!("{} -> {}", l.route.from, l.route.to);
                let listener = link
                    .upcast_ref()
                    .add_listener_local()
                    .error(move |_seq, res, msg| {
                        tracing::warn!("link {label} failed ({res}): {msg}");
                        if let Some(e) = weak.upgrade() {
                            if let Ok(mut e) = e.try_borrow_mut() {
                                e.inflight.links.remove(&key);
                                e.failed_links
                                    .insert(key, format!("link {label} failed: {msg}"));
                            }
                        }
                    })
                    .register();
                conn.pending_links.insert(key, (link, listener));
                self.inflight.links.insert(key);
                self.stats.links_created += 1;
                tracing::debug!("creating link {} -> {}", l.route.from, l.route.to);
            }
            Err(e) => {
                self.failed_links
                    .insert(key, format!("link {} -> {}: {e}", l.route.from, l.route.to));
            }
        }
    }

    fn create_node(&mut self, n: &PluginNode) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let positions: Vec<String> = (0..n.channels).map(|i| format!("AUX{i}")).collect();
        let mut props = pw::properties::PropertiesBox::new();
        props.insert("factory.name", n.factory.clone());
        props.insert("library.name", "mugge/libspa-mugge");
        props.insert("node.name", n.name.clone());
        props.insert(
            "node.description",
            format!("mugge {}", n.name.trim_start_matches("mugge-")),
        );
        props.insert("audio.channels", n.channels.to_string());
        props.insert("audio.position", format!("[ {} ]", positions.join(" ")));
        props.insert("mugge.channels", n.channels.to_string());
        // Bare, with one DSP port per channel: links go straight to the node, no converter
        // (half the graph time of the adapter's layout, see docs/plugin.md). The ports are
        // still found from the registry: each says its `audio.channel` (AUX0..), the node its
        // `audio.position`.
        props.insert("mugge.ports", "dsp");
        props.insert("node.autoconnect", "false");
        props.insert("object.linger", "true");
        match conn
            .core
            .create_object::<pw::node::Node>("spa-node-factory", &props)
        {
            Ok(node) => {
                let weak = self.weak.clone();
                let name = n.name.clone();
                let listener = node
                    .upcast_ref()
                    .add_listener_local()
                    .error(move |_seq, res, msg| {
                        tracing::warn!("creating node {name} failed ({res}): {msg}");
                        if let Some(e) = weak.upgrade() {
                            if let Ok(mut e) = e.try_borrow_mut() {
                                e.inflight.nodes.remove(&name);
                                e.failed_nodes
                                    .insert(name.clone(), format!("{name}: {msg}"));
                                e.publish();
                            }
                        }
                    })
                    .register();
                conn.pending_nodes.insert(n.name.clone(), (node, listener));
                self.inflight.nodes.insert(n.name.clone());
                self.stats.nodes_created += 1;
                tracing::info!(
                    "creating node {} ({}, {} ch)",
                    n.name,
                    n.factory,
                    n.channels
                );
            }
            Err(e) => {
                self.failed_nodes
                    .insert(n.name.clone(), format!("{}: {e}", n.name));
            }
        }
    }

    fn publish(&mut self) {
        if self.synced && self.conn.is_some() && !self.disconnected.get() {
            let inflight = self.inflight.clone();
            let plan = reconcile(&self.desired, &self.graph, &inflight);
            self.publish_plan(plan);
        } else {
            let st = Status {
                connected: false,
                generation: self.generation,
                missing: vec!["not connected to PipeWire".into()],
                stats: self.stats.clone(),
                ..Status::default()
            };
            self.send(st);
        }
    }

    fn publish_plan(&mut self, plan: Plan) {
        let mut missing = plan.missing;
        missing.extend(self.failed_links.values().cloned());
        for (name, why) in &self.failed_nodes {
            let line = format!("plugin node could not be created: {why}");
            if self.desired.require_plugins {
                missing.push(line);
            } else {
                let _ = name;
            }
        }
        if let Some(q) = self.quantum_wanted {
            if self.quantum_seen != Some(q) {
                missing.push(format!(
                    "quantum {q} not applied yet (now {:?})",
                    self.quantum_seen
                ));
            }
        }
        missing.sort();
        missing.dedup();
        let health = self
            .components
            .iter()
            .map(|c| (c.clone(), self.graph.node_named(c).is_some()))
            .collect();
        let profile = self
            .graph
            .nodes
            .values()
            .find(|n| n.name == routing::filters_out(self.filter_tag()))
            .and_then(|n| n.props.get("mugge.profile").cloned());
        let mut optional_missing = plan.optional_missing;
        optional_missing.extend(
            self.failed_nodes
                .values()
                .map(|w| format!("plugin node could not be created: {w}")),
        );
        let sockets = self
            .graph
            .nodes
            .values()
            .filter(|n| routing::is_plugin_node(&n.name))
            .filter_map(|n| {
                let p = n
                    .props
                    .get("mugge.tap.socket")
                    .or_else(|| n.props.get("mugge.meter.socket"))?;
                Some((n.name.clone(), p.clone()))
            })
            .collect();
        let st = Status {
            sockets,
            connected: true,
            generation: self.generation,
            ready: missing.is_empty(),
            missing,
            optional_missing,
            quantum: self.quantum_seen,
            profile,
            health,
            links: plan.links,
            stats: self.stats.clone(),
            chains: self.chains(),
        };
        self.send(st);
    }

    fn set_controls(&self, node: &str, controls: &[(String, f32)]) -> Result<(), String> {
        self.set_pod(node, &super::props::params_pod(controls))
    }

    fn set_pod(&self, node: &str, bytes: &[u8]) -> Result<(), String> {
        let conn = self.conn.as_ref().ok_or("not connected to PipeWire")?;
        let id = self
            .graph
            .node_named(node)
            .map(|n| n.id)
            .ok_or_else(|| format!("node {node} is not in the graph"))?;
        let (proxy, _) = conn
            .nodes
            .get(&id)
            .ok_or_else(|| format!("node {node} is not bound"))?;
        let pod = pw::spa::pod::Pod::from_bytes(bytes).ok_or("bad Props pod")?;
        proxy.set_param(pw::spa::param::ParamType::Props, 0, pod);
        Ok(())
    }

    fn chains(&self) -> Vec<super::chain::ChainSeen> {
        let empty = HashMap::new();
        let clients = self.conn.as_ref().map_or(&empty, |c| &c.clients);
        super::chain::seen(&self.graph, clients)
    }

    fn filter_tag(&self) -> &str {
        self.desired
            .table
            .routes
            .iter()
            .find_map(|r| r.from.node.strip_prefix(routing::FILTERS_OUT_PREFIX))
            .unwrap_or("main")
    }

    fn send(&mut self, st: Status) {
        if self.last_status.as_ref() != Some(&st) {
            self.last_status = Some(st.clone());
            let _ = self.status_tx.try_send(st);
        }
    }
}
