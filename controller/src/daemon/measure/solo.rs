//! One speaker at a time, always through its own filters: the generator feeds only the chain
//! input(s) that feed the channel (left -> 1, right -> 2, an L+R sum -> both, so the sum sees
//! the generator at unity), and every other chain output is held at gain 0 through its
//! `ch<N>_gain:Mult` control. Nothing is routed around the filter-chain.

use mugge_filter_chain::profile::Role;
use mugge_filter_chain::set::Manifest;

use super::super::props::gain_control;
use super::super::routing::{self, Table};

/// The program (chain input) channels that feed speaker `channel`, one-based.
pub fn inputs_for(m: &Manifest, channel: u32) -> Option<Vec<u32>> {
    let c = m.channels.iter().find(|c| c.channel == channel)?;
    Some(match c.role {
        Role::Left => vec![1],
        Role::Right => vec![2],
        Role::Sum => vec![1, 2],
    })
}

/// Gains of every chain output: `channel` at its trim, all others 0.
pub fn gains(trims: &[(u32, f32)], channel: Option<u32>) -> Vec<(String, f32)> {
    trims
        .iter()
        .map(|(ch, t)| {
            (
                gain_control(*ch),
                if Some(*ch) == channel { *t } else { 0.0 },
            )
        })
        .collect()
}

/// The Measurement table with the generator linked only to `inputs` of the program sink
/// (none: the generator feeds nothing).
pub fn restrict(mut t: Table, inputs: &[u32]) -> Table {
    t.routes.retain(|r| {
        !(r.from.node == routing::SIGGEN
            && r.to.node == routing::PROGRAM
            && !inputs.contains(&r.to.channel))
    });
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::routing::{table, Mode, TableInput, Topology};

    #[test]
    fn the_generator_reaches_only_the_selected_inputs_and_the_rest_is_muted() {
        let topo = Topology::default();
        let t = table(&TableInput {
            mode: Mode::Measurement,
            topology: &topo,
            filter_tag: "a",
            app: None,
            extra: &[],
            taps: &[],
            require_plugins: false,
        })
        .unwrap();
        let gen = |t: &Table| -> Vec<u32> {
            t.routes
                .iter()
                .filter(|r| r.from.node == routing::SIGGEN && r.to.node == routing::PROGRAM)
                .map(|r| r.to.channel)
                .collect()
        };
        assert_eq!(gen(&t), vec![1, 2]);
        assert_eq!(gen(&restrict(t.clone(), &[2])), vec![2]);
        assert!(gen(&restrict(t.clone(), &[])).is_empty());
        // The reference tap stays whatever is selected.
        assert!(restrict(t, &[])
            .routes
            .iter()
            .any(|r| r.from.node == routing::SIGGEN));
        let g = gains(&[(1, 1.0), (2, 0.5), (3, 0.89)], Some(2));
        assert_eq!(
            g,
            vec![
                ("ch1_gain:Mult".to_string(), 0.0),
                ("ch2_gain:Mult".to_string(), 0.5),
                ("ch3_gain:Mult".to_string(), 0.0)
            ]
        );
        assert!(gains(&[(1, 1.0)], None).iter().all(|(_, v)| *v == 0.0));
    }
}
