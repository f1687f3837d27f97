//! The PipeWire graph as `pw-dump` reports it: nodes, ports and links with their properties.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Node {
    pub id: u32,
    pub name: String,
    pub media_class: String,
    pub state: String,
    pub n_input_ports: u32,
    pub n_output_ports: u32,
    pub props: Map<String, Value>,
    /// The node's params as pw-dump shows them (e.g. "Props", "PortConfig").
    pub params: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Port {
    pub id: u32,
    pub node_id: u32,
    pub name: String,
    /// "in" or "out".
    pub direction: String,
    /// `audio.channel` (e.g. "AUX0", "FL", "MONO"), empty when the port has none.
    pub channel: String,
    pub is_monitor: bool,
    pub props: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub id: u32,
    pub output_node: u32,
    pub output_port: u32,
    pub input_node: u32,
    pub input_port: u32,
    pub state: String,
    pub props: Map<String, Value>,
}

/// One snapshot of the graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub ports: Vec<Port>,
    pub links: Vec<Link>,
    pub metadata: Vec<Value>,
}

fn str_of(m: &Map<String, Value>, key: &str) -> String {
    match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn u32_of(v: &Value, key: &str) -> u32 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0) as u32
}

impl Graph {
    /// Parses the JSON array that `pw-dump` prints.
    pub fn parse(json: &str) -> Result<Graph> {
        let all: Vec<Value> =
            serde_json::from_str(json).context("pw-dump output is not a JSON array")?;
        let mut g = Graph::default();
        for obj in all {
            let id = u32_of(&obj, "id");
            let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
            let info = obj.get("info").cloned().unwrap_or(Value::Null);
            let props = info
                .get("props")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            match ty {
                "PipeWire:Interface:Node" => g.nodes.push(Node {
                    id,
                    name: str_of(&props, "node.name"),
                    media_class: str_of(&props, "media.class"),
                    state: info
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    n_input_ports: u32_of(&info, "n-input-ports"),
                    n_output_ports: u32_of(&info, "n-output-ports"),
                    params: info
                        .get("params")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    props,
                }),
                "PipeWire:Interface:Port" => g.ports.push(Port {
                    id,
                    node_id: str_of(&props, "node.id").parse().unwrap_or(0),
                    name: str_of(&props, "port.name"),
                    direction: info
                        .get("direction")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    channel: str_of(&props, "audio.channel"),
                    is_monitor: str_of(&props, "port.monitor") == "true",
                    props,
                }),
                "PipeWire:Interface:Link" => g.links.push(Link {
                    id,
                    output_node: u32_of(&info, "output-node-id"),
                    output_port: u32_of(&info, "output-port-id"),
                    input_node: u32_of(&info, "input-node-id"),
                    input_port: u32_of(&info, "input-port-id"),
                    state: info
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    props,
                }),
                "PipeWire:Interface:Metadata" => g.metadata.push(obj),
                _ => {}
            }
        }
        Ok(g)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// All nodes with this name (more than one means a duplicate).
    pub fn nodes_named(&self, name: &str) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.name == name).collect()
    }

    pub fn node_by_id(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn ports_of(&self, node_id: u32) -> Vec<&Port> {
        let mut p: Vec<&Port> = self.ports.iter().filter(|p| p.node_id == node_id).collect();
        p.sort_by_key(|p| p.id);
        p
    }

    /// The port `node:port` by names.
    pub fn port(&self, node: &str, port: &str) -> Option<&Port> {
        let n = self.node(node)?;
        self.ports
            .iter()
            .find(|p| p.node_id == n.id && p.name == port)
    }

    pub fn port_by_id(&self, id: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.id == id)
    }

    /// The link from `out_node:out_port` to `in_node:in_port`, if any.
    pub fn link(&self, out: &str, inp: &str) -> Option<&Link> {
        let (on, op) = split_port(out).ok()?;
        let (inn, ip) = split_port(inp).ok()?;
        let o = self.port(on, op)?;
        let i = self.port(inn, ip)?;
        self.links
            .iter()
            .find(|l| l.output_port == o.id && l.input_port == i.id)
    }

    /// Every link touching the node, either side.
    pub fn links_of(&self, node_id: u32) -> Vec<&Link> {
        self.links
            .iter()
            .filter(|l| l.output_node == node_id || l.input_node == node_id)
            .collect()
    }

    /// `"node:port"` of a link end, for messages.
    pub fn describe_port(&self, port_id: u32) -> String {
        match self.port_by_id(port_id) {
            Some(p) => {
                let node = self
                    .node_by_id(p.node_id)
                    .map(|n| n.name.as_str())
                    .unwrap_or("?");
                format!("{node}:{}", p.name)
            }
            None => format!("port#{port_id}"),
        }
    }

    /// A metadata value by metadata name and key (subject 0), e.g. ("settings", "clock.force-quantum").
    pub fn metadata_value(&self, metadata: &str, key: &str) -> Option<Value> {
        for m in &self.metadata {
            let name = m
                .pointer("/props/metadata.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name != metadata {
                continue;
            }
            for entry in m
                .get("metadata")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if entry.get("key").and_then(Value::as_str) == Some(key) {
                    return entry.get("value").cloned();
                }
            }
        }
        None
    }
}

/// Splits `"node:port"`; node names may themselves contain ':' only before the last one.
pub fn split_port(s: &str) -> Result<(&str, &str)> {
    match s.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n, p)),
        _ => bail!("expected \"node:port\", got {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"[
      {"id": 29, "type": "PipeWire:Interface:Node", "info": {"state": "running", "n-input-ports": 1,
        "n-output-ports": 0, "props": {"node.name": "sink", "media.class": "Audio/Sink"}, "params": {}}},
      {"id": 40, "type": "PipeWire:Interface:Node", "info": {"state": "running", "n-input-ports": 0,
        "n-output-ports": 1, "props": {"node.name": "src"}}},
      {"id": 30, "type": "PipeWire:Interface:Port", "info": {"direction": "input",
        "props": {"node.id": 29, "port.name": "playback_AUX0", "audio.channel": "AUX0"}}},
      {"id": 41, "type": "PipeWire:Interface:Port", "info": {"direction": "output",
        "props": {"node.id": 40, "port.name": "out_1"}}},
      {"id": 50, "type": "PipeWire:Interface:Link", "info": {"output-node-id": 40, "output-port-id": 41,
        "input-node-id": 29, "input-port-id": 30, "state": "active", "props": {}}},
      {"id": 3, "type": "PipeWire:Interface:Metadata", "props": {"metadata.name": "settings"},
        "metadata": [{"subject": 0, "key": "clock.force-quantum", "type": "", "value": 256}]}
    ]"#;

    #[test]
    fn parses_nodes_ports_links_and_metadata() {
        let g = Graph::parse(DUMP).unwrap();
        assert_eq!(g.node("sink").unwrap().id, 29);
        assert_eq!(g.port("sink", "playback_AUX0").unwrap().channel, "AUX0");
        let l = g.link("src:out_1", "sink:playback_AUX0").unwrap();
        assert_eq!((l.id, l.state.as_str()), (50, "active"));
        assert!(g.link("sink:playback_AUX0", "src:out_1").is_none());
        assert_eq!(
            g.metadata_value("settings", "clock.force-quantum"),
            Some(Value::from(256))
        );
        assert_eq!(g.describe_port(41), "src:out_1");
    }

    #[test]
    fn rejects_port_specs_without_both_halves() {
        assert!(split_port("node").is_err());
        assert!(split_port(":p").is_err());
        assert_eq!(split_port("a:b:c").unwrap(), ("a:b", "c"));
    }
}
