//! The reconciler: a pure function from (desired table, observed graph, operations in flight)
//! to the operations that make the graph match, plus a readiness verdict naming what is missing.
//!
//! Rules (docs/controller.md):
//! 1. A route becomes a link as soon as both ends resolve to registry ports.
//! 2. Every link that touches a managed node and is not desired is destroyed, whoever made it.
//! 3. Of several links between the same two ports, the oldest is kept and the rest destroyed.
//! 4. Plugin nodes are created when absent, destroyed when not desired, duplicated or sized
//!    for another topology; the oldest node of a name is the one adopted.
//! 5. Ready = every required route is an existing link, nothing undesired touches a managed
//!    node, and (when required) every plugin node exists.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::graph::{Direction, Graph};
use super::routing::{self, PluginNode, Route, Table};
use super::status::LinkState;

#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub table: Table,
    /// Plugin nodes hold back readiness only when this is set (the plugin may not be installed).
    pub require_plugins: bool,
}

/// Operations already sent to PipeWire whose results have not shown up in the registry yet.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    pub links: HashSet<(u32, u32)>,
    pub nodes: HashSet<String>,
    pub destroyed: HashSet<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewLink {
    pub out_node: u32,
    pub out_port: u32,
    pub in_node: u32,
    pub in_port: u32,
    pub route: Route,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub create_links: Vec<NewLink>,
    pub destroy_links: Vec<u32>,
    pub create_nodes: Vec<PluginNode>,
    pub destroy_nodes: Vec<u32>,
    /// Why the graph is not ready (empty when ready).
    pub missing: Vec<String>,
    /// Optional routes that cannot be made now (informational).
    pub optional_missing: Vec<String>,
    /// Every route of the table with whether its link exists.
    pub links: Vec<LinkState>,
    pub ready: bool,
}

/// A node the controller owns the links of.
pub fn is_managed(name: &str, table: &Table) -> bool {
    matches!(
        name,
        routing::HW_OUT
            | routing::HW_IN
            | routing::MIC
            | routing::PROGRAM
            | routing::HEADPHONES
            | routing::INEARS
    ) || name.starts_with(routing::FILTERS_IN_PREFIX)
        || name.starts_with(routing::FILTERS_OUT_PREFIX)
        || routing::is_plugin_node(name)
        || table
            .routes
            .iter()
            .any(|r| r.from.node == name || r.to.node == name)
}

fn why_unresolved(g: &Graph, end: &routing::End, dir: Direction) -> String {
    match g.node_named(&end.node) {
        None => format!("node {} is absent", end.node),
        Some(n) if !n.info => format!("node {} has not reported its properties yet", end.node),
        Some(_) => format!(
            "node {} has no {}{} port for channel {}",
            end.node,
            if end.monitor { "monitor " } else { "" },
            if dir == Direction::In {
                "input"
            } else {
                "output"
            },
            end.channel
        ),
    }
}

pub fn reconcile(desired: &Desired, g: &Graph, inflight: &InFlight) -> Plan {
    let table = &desired.table;
    let mut plan = Plan::default();

    // Plugin nodes first: links to a node being replaced would be wasted.
    let wanted: HashMap<&str, &PluginNode> =
        table.plugins.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut adopted: HashSet<&str> = HashSet::new();
    for node in g.nodes.values() {
        if !routing::is_plugin_node(&node.name) || inflight.destroyed.contains(&node.id) {
            continue;
        }
        let keep = match wanted.get(node.name.as_str()) {
            None => false,
            Some(p) => {
                let sized_ok = node
                    .props
                    .get("mugge.channels")
                    .and_then(|c| c.parse::<u32>().ok())
                    .is_none_or(|c| c == p.channels);
                sized_ok && !adopted.contains(node.name.as_str())
            }
        };
        if keep {
            adopted.insert(node.name.as_str());
        } else {
            plan.destroy_nodes.push(node.id);
        }
    }
    let replaced: HashSet<u32> = plan.destroy_nodes.iter().copied().collect();
    for p in &table.plugins {
        let exists = g
            .nodes_named(&p.name)
            .any(|n| !replaced.contains(&n.id) && !inflight.destroyed.contains(&n.id));
        if !exists {
            if !inflight.nodes.contains(&p.name)
                && !g.nodes_named(&p.name).any(|n| replaced.contains(&n.id))
            {
                plan.create_nodes.push(p.clone());
            }
            if desired.require_plugins {
                plan.missing
                    .push(format!("plugin node {} ({}) is absent", p.name, p.factory));
            } else {
                plan.optional_missing
                    .push(format!("plugin node {} ({}) is absent", p.name, p.factory));
            }
        }
    }

    // Desired port pairs.
    let mut desired_pairs: HashSet<(u32, u32)> = HashSet::new();
    for r in &table.routes {
        let out = g.resolve(&r.from.node, Direction::Out, r.from.channel, r.from.monitor);
        let inp = g.resolve(&r.to.node, Direction::In, r.to.channel, r.to.monitor);
        let (out_port, in_port) = match (out, inp) {
            (Some(o), Some(i))
                if !replaced.contains(&g.ports[&o].node)
                    && !replaced.contains(&g.ports[&i].node) =>
            {
                (o, i)
            }
            (o, i) => {
                let mut why = Vec::new();
                if o.is_none() {
                    why.push(why_unresolved(g, &r.from, Direction::Out));
                }
                if i.is_none() {
                    why.push(why_unresolved(g, &r.to, Direction::In));
                }
                if why.is_empty() {
                    why.push("a plugin node is being replaced".to_string());
                }
                let why = why.join(", ");
                plan.links.push(LinkState {
                    from: r.from.to_string(),
                    to: r.to.to_string(),
                    optional: r.optional,
                    present: false,
                });
                let msg = format!("link {} -> {}: {why}", r.from, r.to);
                if r.optional {
                    plan.optional_missing.push(msg);
                } else {
                    plan.missing.push(msg);
                }
                continue;
            }
        };
        let exists = g.links.values().any(|l| {
            l.out_port == out_port && l.in_port == in_port && !inflight.destroyed.contains(&l.id)
        });
        plan.links.push(LinkState {
            from: r.from.to_string(),
            to: r.to.to_string(),
            optional: r.optional,
            present: exists,
        });
        if !desired_pairs.insert((out_port, in_port)) {
            continue;
        }
        if !exists {
            if !inflight.links.contains(&(out_port, in_port)) {
                plan.create_links.push(NewLink {
                    out_node: g.ports[&out_port].node,
                    out_port,
                    in_node: g.ports[&in_port].node,
                    in_port,
                    route: r.clone(),
                });
            }
            if !r.optional {
                plan.missing
                    .push(format!("link {} -> {} is not there yet", r.from, r.to));
            }
        }
    }

    // Undesired and duplicate links touching managed nodes.
    let managed: BTreeSet<u32> = g
        .nodes
        .values()
        .filter(|n| is_managed(&n.name, table))
        .map(|n| n.id)
        .collect();
    let mut kept: HashSet<(u32, u32)> = HashSet::new();
    for l in g.links.values() {
        if inflight.destroyed.contains(&l.id) {
            continue;
        }
        // Until both nodes have reported their properties, routes between them cannot be
        // resolved, so the link cannot be judged: destroying it now would tear down what a
        // previous run made (adoption after a restart).
        let judged = |id: u32| g.nodes.get(&id).is_some_and(|n| n.info);
        if !judged(l.out_node) || !judged(l.in_node) {
            plan.missing.push(format!(
                "link {} -> {} waits for node properties",
                g.port_label(l.out_port),
                g.port_label(l.in_port)
            ));
            continue;
        }
        let pair = (l.out_port, l.in_port);
        let wanted = desired_pairs.contains(&pair) && kept.insert(pair);
        let touches = managed.contains(&l.out_node) || managed.contains(&l.in_node);
        if !wanted && (touches || desired_pairs.contains(&pair)) {
            plan.destroy_links.push(l.id);
            plan.missing.push(format!(
                "undesired link {} -> {} is still there",
                g.port_label(l.out_port),
                g.port_label(l.in_port)
            ));
        }
    }
    plan.ready = plan.missing.is_empty();
    plan
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::{aux, G};
    use super::super::routing::*;
    use super::*;

    struct World {
        g: G,
        hw_out: u32,
    }

    /// Mock hardware, virtual sinks and a filter-chain pair, as on the test stack.
    fn world(speakers: usize) -> World {
        let mut g = G::new();
        let a = aux(8);
        let pos: Vec<&str> = a.iter().map(String::as_str).collect();
        let hw_out = g.node(HW_OUT, &pos, true, false, true);
        g.node(HW_IN, &pos, false, true, false);
        g.node(MIC, &["MONO"], false, true, false);
        for s in [PROGRAM, HEADPHONES, INEARS] {
            g.node(s, &["FL", "FR"], true, false, true);
        }
        g.node("mugge-filters-in.main", &["FL", "FR"], true, false, false);
        g.node(
            "mugge-filters-out.main",
            &pos[..speakers],
            false,
            true,
            false,
        );
        World { g, hw_out }
    }

    fn desired(mode: Mode, t: &Topology) -> Desired {
        let app = AppRouting {
            node: "Mixxx".into(),
            program: vec![1, 2],
            headphones: vec![3, 4],
            inears: vec![],
        };
        let inp = TableInput {
            mode,
            topology: t,
            filter_tag: "main",
            app: Some(&app),
            extra: &[],
            taps: &[],
            require_plugins: false,
        };
        Desired {
            table: table(&inp).unwrap(),
            require_plugins: false,
        }
    }

    /// Applies a plan as PipeWire would, returning the number of operations.
    fn apply(w: &mut G, plan: &Plan) -> usize {
        for l in &plan.create_links {
            w.link(l.out_port, l.in_port);
        }
        for id in plan.destroy_links.iter().chain(&plan.destroy_nodes) {
            w.g.remove(*id);
        }
        plan.create_links.len() + plan.destroy_links.len() + plan.destroy_nodes.len()
    }

    fn converge(w: &mut G, d: &Desired) -> Plan {
        for _ in 0..3 {
            let p = reconcile(d, &w.g, &InFlight::default());
            if apply(w, &p) == 0 {
                return p;
            }
        }
        panic!("did not converge");
    }

    #[test]
    fn empty_graph_reports_what_is_missing_and_creates_nothing() {
        let g = G::new();
        let d = desired(Mode::Dj, &Topology::default());
        let p = reconcile(&d, &g.g, &InFlight::default());
        assert!(!p.ready);
        assert!(p.create_links.is_empty());
        assert!(p
            .missing
            .iter()
            .any(|m| m.contains("node usbstreamer-out is absent")));
        assert_eq!(p.create_nodes.len(), 3, "three meters");
    }

    #[test]
    fn dj_converges_and_a_second_pass_is_a_no_op() {
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        // 4 speakers + 2 program + 2 headphones required.
        assert_eq!(p.create_links.len(), 8);
        assert!(!p.ready);
        let p = converge(&mut w.g, &d);
        assert!(p.ready, "{:?}", p.missing);
        assert!(p.create_links.is_empty() && p.destroy_links.is_empty());
        assert_eq!(w.g.g.links.len(), 8);
        // The route report lists every route with its state.
        assert_eq!(p.links.len(), d.table.routes.len());
        assert_eq!(p.links.iter().filter(|l| l.present).count(), 8);
        assert!(p.links.iter().any(|l| l.from == "mugge-filters-out.main:1"
            && l.to == "usbstreamer-out:1"
            && l.present));
        // Speaker 3 is filters-out channel 3 -> hardware AUX2.
        let l =
            w.g.g
                .links
                .values()
                .find(|l| w.g.g.ports[&l.in_port].channel.as_deref() == Some("AUX2"))
                .unwrap();
        assert_eq!(w.g.g.node_name(l.out_node), Some("mugge-filters-out.main"));
    }

    #[test]
    fn a_link_behind_our_back_to_the_hardware_is_destroyed() {
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        converge(&mut w.g, &d);
        let rogue = w.g.jack("rogue", 0, 2);
        let out = w.g.g.resolve("rogue", Direction::Out, 1, false).unwrap();
        let hw1 = w.g.g.resolve(HW_OUT, Direction::In, 1, false).unwrap();
        let id = w.g.link(out, hw1);
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_links, vec![id]);
        assert!(!p.ready);
        assert!(p.missing[0].contains("rogue:out_1 -> usbstreamer-out:playback_AUX0"));
        // A link between two unmanaged nodes is none of our business.
        let other = w.g.jack("other", 2, 0);
        let oin = w.g.g.resolve("other", Direction::In, 1, false).unwrap();
        w.g.link(out, oin);
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_links, vec![id]);
        let _ = (rogue, other);
    }

    #[test]
    fn bypass_on_every_speaker_channel_of_a_six_speaker_topology() {
        let t = Topology {
            profile: "3way".into(),
            speakers: vec![1, 2, 3, 4, 5, 6],
            headphones: vec![7, 8],
            inears: vec![],
            hw_inputs: 8,
            program_channels: 2,
        };
        let mut w = world(6);
        let d = desired(Mode::Dj, &t);
        converge(&mut w.g, &d);
        // The program sink's monitor straight into every speaker channel: all destroyed.
        let src = w.g.g.resolve(PROGRAM, Direction::Out, 1, true).unwrap();
        let mut rogue = vec![];
        for ch in 1..=6 {
            let hw = w.g.g.resolve(HW_OUT, Direction::In, ch, false).unwrap();
            rogue.push(w.g.link(src, hw));
        }
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_links, rogue);
        let _ = w.hw_out;
    }

    #[test]
    fn links_of_nodes_without_properties_yet_are_adopted_not_destroyed() {
        // After a restart the registry delivers nodes, ports and links before node info.
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        converge(&mut w.g, &d);
        let ids: Vec<u32> = w.g.g.links.keys().copied().collect();
        for n in w.g.g.nodes.values_mut() {
            n.info = false;
        }
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert!(p.destroy_links.is_empty() && p.create_links.is_empty());
        assert!(!p.ready);
        for n in w.g.g.nodes.values_mut() {
            n.info = true;
        }
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert!(p.ready && p.destroy_links.is_empty());
        assert_eq!(w.g.g.links.keys().copied().collect::<Vec<_>>(), ids);
    }

    #[test]
    fn duplicates_keep_the_oldest_link() {
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        converge(&mut w.g, &d);
        let (first, out, inp) =
            w.g.g
                .links
                .values()
                .map(|l| (l.id, l.out_port, l.in_port))
                .next()
                .unwrap();
        let dup = w.g.link(out, inp);
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_links, vec![dup]);
        assert!(p.create_links.is_empty());
        assert!(w.g.g.links.contains_key(&first));
    }

    #[test]
    fn links_in_flight_are_not_requested_twice() {
        let w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        let mut inflight = InFlight::default();
        for l in &p.create_links {
            inflight.links.insert((l.out_port, l.in_port));
        }
        let p2 = reconcile(&d, &w.g.g, &inflight);
        assert!(p2.create_links.is_empty());
        assert!(!p2.ready, "not ready until the links are in the registry");
    }

    #[test]
    fn mode_switch_destroys_what_the_new_table_lacks() {
        let mut w = world(4);
        converge(&mut w.g, &desired(Mode::Dj, &Topology::default()));
        let d = desired(Mode::Standby, &Topology::default());
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        // Program -> filters-in (2) and headphones (2) go; speakers stay.
        assert_eq!(p.destroy_links.len(), 4);
        let p = converge(&mut w.g, &d);
        assert!(p.ready);
        assert_eq!(w.g.g.links.len(), 4);
    }

    #[test]
    fn app_routes_are_optional_and_made_when_the_app_appears() {
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        let p = converge(&mut w.g, &d);
        assert!(p.ready);
        assert!(p
            .optional_missing
            .iter()
            .any(|m| m.contains("node Mixxx is absent")));
        w.g.jack("Mixxx", 0, 4);
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.create_links.len(), 4);
        assert!(p.ready, "optional links do not hold back readiness");
    }

    #[test]
    fn plugin_nodes_created_adopted_resized_and_removed() {
        let mut w = world(4);
        let t = Topology::default();
        let d = Desired {
            require_plugins: true,
            ..desired(Mode::Measurement, &t)
        };
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        let names: Vec<_> = p.create_nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                METER_PROGRAM,
                METER_HW_OUT,
                METER_HW_IN,
                SIGGEN,
                "mugge-tap-umik1-in",
                "mugge-tap-mugge-siggen",
                routing::METER_MIC,
            ]
        );
        assert!(p.missing.iter().any(|m| m.contains("mugge-siggen")));
        // In flight: not requested again.
        let inflight = InFlight {
            nodes: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(reconcile(&d, &w.g.g, &inflight).create_nodes.is_empty());
        // Existing ones are adopted, a second one of a name is destroyed.
        let m1 = w.g.jack(METER_HW_IN, 8, 0);
        let m2 = w.g.jack(METER_HW_IN, 8, 0);
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_nodes, vec![m2]);
        assert!(!p.create_nodes.iter().any(|n| n.name == METER_HW_IN));
        w.g.g.remove(m2);
        // A meter sized for another topology is replaced.
        w.g.g
            .nodes
            .get_mut(&m1)
            .unwrap()
            .props
            .insert("mugge.channels".into(), "6".into());
        let p = reconcile(&d, &w.g.g, &InFlight::default());
        assert_eq!(p.destroy_nodes, vec![m1]);
        // Leaving measurement removes the generator.
        let gen = w.g.jack(SIGGEN, 0, 1);
        let p = reconcile(&desired(Mode::Dj, &t), &w.g.g, &InFlight::default());
        assert!(p.destroy_nodes.contains(&gen));
    }

    #[test]
    fn a_second_filter_chain_instance_cannot_feed_speakers() {
        let mut w = world(4);
        let d = desired(Mode::Dj, &Topology::default());
        converge(&mut w.g, &d);
        let a = aux(4);
        let pos: Vec<&str> = a.iter().map(String::as_str).collect();
        w.g.node("mugge-filters-out.reload", &pos, false, true, false);
        let o =
            w.g.g
                .resolve("mugge-filters-out.reload", Direction::Out, 1, false)
                .unwrap();
        let i = w.g.g.resolve(HW_OUT, Direction::In, 1, false).unwrap();
        let id = w.g.link(o, i);
        assert_eq!(
            reconcile(&d, &w.g.g, &InFlight::default()).destroy_links,
            vec![id]
        );
    }
}
