//! The observed PipeWire graph, built only from registry events (globals, node info, removals).
//!
//! Ports are resolved to one-based channels from what the registry says, never from a name
//! pattern: channel N of a node is the port whose `audio.channel` is the node's N-th
//! `audio.position`, or, when the node declares no positions, the port whose `port.id` is N-1.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Direction {
    In,
    Out,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Node {
    pub id: u32,
    pub name: String,
    pub media_class: String,
    /// Full properties from the node's info event (empty until it arrives).
    pub props: BTreeMap<String, String>,
    /// True once the info event arrived: only then are ports resolvable.
    pub info: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Port {
    pub id: u32,
    pub node: u32,
    pub direction: Direction,
    /// `port.id`: the index of the port within its node and direction.
    pub index: u32,
    pub channel: Option<String>,
    pub monitor: bool,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub id: u32,
    pub out_node: u32,
    pub out_port: u32,
    pub in_node: u32,
    pub in_port: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Graph {
    pub nodes: BTreeMap<u32, Node>,
    pub ports: BTreeMap<u32, Port>,
    pub links: BTreeMap<u32, Link>,
}

/// Parses `audio.position` as PipeWire writes it: `[ FL FR ]`, `FL,FR` or `FL FR`.
pub fn parse_positions(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace() || c == '[' || c == ']')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Graph {
    pub fn remove(&mut self, id: u32) {
        self.nodes.remove(&id);
        self.ports.remove(&id);
        self.links.remove(&id);
    }

    /// All nodes with this name, lowest id first (the oldest one is the one adopted).
    pub fn nodes_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.values().filter(move |n| n.name == name)
    }

    pub fn node_named(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }

    pub fn node_name(&self, id: u32) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.name.as_str())
    }

    pub fn ports_of(&self, node: u32) -> impl Iterator<Item = &Port> + '_ {
        self.ports.values().filter(move |p| p.node == node)
    }

    /// The registry port for "node, direction, one-based channel", with the monitor side only
    /// when asked for. `None` while the node, its info or the port is not (yet) there.
    pub fn resolve(&self, node: &str, dir: Direction, channel: u32, monitor: bool) -> Option<u32> {
        if channel == 0 {
            return None;
        }
        let node = self.node_named(node)?;
        if !node.info {
            return None;
        }
        // Only a sink's monitor flag marks a monitor side: a virtual source (the mock
        // usbstreamer-in, umik1-in) flags its capture outputs as monitors too.
        let is_sink = node.media_class.ends_with("Sink");
        let mut candidates = self
            .ports_of(node.id)
            .filter(|p| p.direction == dir && (p.monitor && is_sink) == monitor);
        let positions = node
            .props
            .get("audio.position")
            .map(|s| parse_positions(s))
            .unwrap_or_default();
        match positions.get(channel as usize - 1) {
            Some(pos) => candidates
                .find(|p| p.channel.as_deref() == Some(pos.as_str()))
                .map(|p| p.id),
            None if positions.is_empty() => {
                candidates.find(|p| p.index == channel - 1).map(|p| p.id)
            }
            None => None,
        }
    }

    /// Human name of a port for reports: `node:port_name`.
    pub fn port_label(&self, port: u32) -> String {
        match self.ports.get(&port) {
            Some(p) => format!("{}:{}", self.node_name(p.node).unwrap_or("?"), p.name),
            None => format!("port#{port}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny graph builder for unit tests.
    #[derive(Default)]
    pub struct G {
        pub g: Graph,
        next: u32,
    }

    impl G {
        pub fn new() -> Self {
            G {
                g: Graph::default(),
                next: 100,
            }
        }
        fn id(&mut self) -> u32 {
            self.next += 1;
            self.next
        }
        /// A node with `audio.position` and matching in/out/monitor ports as the kind says.
        pub fn node(
            &mut self,
            name: &str,
            positions: &[&str],
            ins: bool,
            outs: bool,
            monitors: bool,
        ) -> u32 {
            let id = self.id();
            let mut props = BTreeMap::new();
            if !positions.is_empty() {
                props.insert(
                    "audio.position".into(),
                    format!("[ {} ]", positions.join(" ")),
                );
            }
            self.g.nodes.insert(
                id,
                Node {
                    id,
                    name: name.into(),
                    media_class: if ins {
                        "Audio/Sink"
                    } else {
                        "Audio/Source/Virtual"
                    }
                    .into(),
                    props,
                    info: true,
                },
            );
            // Add ports in reverse so that registry order never equals channel order by accident.
            for (i, pos) in positions.iter().enumerate().rev() {
                if ins {
                    self.port(
                        id,
                        Direction::In,
                        i as u32,
                        Some(pos),
                        false,
                        &format!("playback_{pos}"),
                    );
                }
                if outs {
                    self.port(
                        id,
                        Direction::Out,
                        i as u32,
                        Some(pos),
                        false,
                        &format!("capture_{pos}"),
                    );
                }
                if monitors {
                    self.port(
                        id,
                        Direction::Out,
                        i as u32,
                        Some(pos),
                        true,
                        &format!("monitor_{pos}"),
                    );
                }
            }
            id
        }
        /// A JACK-style node: no positions, ports indexed by `port.id` only.
        pub fn jack(&mut self, name: &str, n_in: u32, n_out: u32) -> u32 {
            let id = self.id();
            self.g.nodes.insert(
                id,
                Node {
                    id,
                    name: name.into(),
                    media_class: String::new(),
                    props: BTreeMap::new(),
                    info: true,
                },
            );
            for i in (0..n_in).rev() {
                self.port(id, Direction::In, i, None, false, &format!("in_{}", i + 1));
            }
            for i in (0..n_out).rev() {
                self.port(
                    id,
                    Direction::Out,
                    i,
                    None,
                    false,
                    &format!("out_{}", i + 1),
                );
            }
            id
        }
        pub fn port(
            &mut self,
            node: u32,
            direction: Direction,
            index: u32,
            ch: Option<&str>,
            monitor: bool,
            name: &str,
        ) -> u32 {
            let id = self.id();
            self.g.ports.insert(
                id,
                Port {
                    id,
                    node,
                    direction,
                    index,
                    channel: ch.map(Into::into),
                    monitor,
                    name: name.into(),
                },
            );
            id
        }
        pub fn link(&mut self, out_port: u32, in_port: u32) -> u32 {
            let id = self.id();
            let out_node = self.g.ports[&out_port].node;
            let in_node = self.g.ports[&in_port].node;
            self.g.links.insert(
                id,
                Link {
                    id,
                    out_node,
                    out_port,
                    in_node,
                    in_port,
                },
            );
            id
        }
    }

    pub fn aux(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("AUX{i}")).collect()
    }

    #[test]
    fn positions_parse_in_all_spellings() {
        assert_eq!(parse_positions("[ FL FR ]"), vec!["FL", "FR"]);
        assert_eq!(parse_positions("FL,FR"), vec!["FL", "FR"]);
        assert_eq!(parse_positions("[MONO]"), vec!["MONO"]);
    }

    #[test]
    fn channel_one_is_the_first_position_not_port_name_zero_or_one() {
        let mut g = G::new();
        let a = aux(8);
        let pos: Vec<&str> = a.iter().map(String::as_str).collect();
        let hw = g.node("usbstreamer-out", &pos, true, false, true);
        let p1 =
            g.g.resolve("usbstreamer-out", Direction::In, 1, false)
                .unwrap();
        assert_eq!(g.g.ports[&p1].channel.as_deref(), Some("AUX0"));
        assert!(!g.g.ports[&p1].monitor);
        let p8 =
            g.g.resolve("usbstreamer-out", Direction::In, 8, false)
                .unwrap();
        assert_eq!(g.g.ports[&p8].channel.as_deref(), Some("AUX7"));
        assert_eq!(
            g.g.resolve("usbstreamer-out", Direction::In, 9, false),
            None
        );
        assert_eq!(
            g.g.resolve("usbstreamer-out", Direction::In, 0, false),
            None
        );
        // The monitor side only when asked for.
        let m1 =
            g.g.resolve("usbstreamer-out", Direction::Out, 1, true)
                .unwrap();
        assert!(g.g.ports[&m1].monitor);
        assert_eq!(
            g.g.resolve("usbstreamer-out", Direction::Out, 1, false),
            None
        );
        assert_eq!(g.g.ports[&m1].node, hw);
    }

    #[test]
    fn a_bare_plugin_nodes_one_based_port_names_do_not_shift_its_channels() {
        // A bare mugge meter: ports `input_1`.. say AUX0.., listed out of order.
        let mut g = G::new();
        let id = g.node(
            "mugge-meter-hw-in",
            &["AUX0", "AUX1", "AUX2"],
            false,
            false,
            false,
        );
        g.port(id, Direction::In, 2, Some("AUX2"), false, "input_3");
        g.port(id, Direction::In, 0, Some("AUX0"), false, "input_1");
        g.port(id, Direction::In, 1, Some("AUX1"), false, "input_2");
        for ch in 1..=3 {
            let p =
                g.g.resolve("mugge-meter-hw-in", Direction::In, ch, false)
                    .unwrap();
            assert_eq!(g.g.ports[&p].name, format!("input_{ch}"));
        }
        assert_eq!(
            g.g.resolve("mugge-meter-hw-in", Direction::In, 4, false),
            None
        );
    }

    #[test]
    fn mono_and_jack_nodes_resolve_without_name_guessing() {
        let mut g = G::new();
        g.node("umik1-in", &["MONO"], false, true, false);
        let p = g.g.resolve("umik1-in", Direction::Out, 1, false).unwrap();
        assert_eq!(g.g.ports[&p].name, "capture_MONO");
        g.jack("Mixxx", 0, 4);
        for ch in 1..=4 {
            let p = g.g.resolve("Mixxx", Direction::Out, ch, false).unwrap();
            assert_eq!(g.g.ports[&p].name, format!("out_{ch}"));
        }
        assert_eq!(g.g.resolve("Mixxx", Direction::Out, 5, false), None);
    }

    #[test]
    fn a_virtual_sources_monitor_flagged_capture_ports_are_its_outputs() {
        // The null-sink mock of usbstreamer-in flags capture_AUX* as port.monitor.
        let mut g = G::new();
        let id = g.node("usbstreamer-in", &["AUX0", "AUX1"], false, false, false);
        g.port(id, Direction::Out, 1, Some("AUX1"), true, "capture_AUX1");
        g.port(id, Direction::Out, 0, Some("AUX0"), true, "capture_AUX0");
        g.port(id, Direction::In, 0, Some("AUX0"), false, "input_AUX0");
        let p =
            g.g.resolve("usbstreamer-in", Direction::Out, 1, false)
                .unwrap();
        assert_eq!(g.g.ports[&p].name, "capture_AUX0");
        let p =
            g.g.resolve("usbstreamer-in", Direction::Out, 2, false)
                .unwrap();
        assert_eq!(g.g.ports[&p].name, "capture_AUX1");
    }

    #[test]
    fn ports_of_a_node_without_info_are_not_resolved() {
        let mut g = G::new();
        let id = g.jack("late", 1, 0);
        g.g.nodes.get_mut(&id).unwrap().info = false;
        assert_eq!(g.g.resolve("late", Direction::In, 1, false), None);
    }
}
