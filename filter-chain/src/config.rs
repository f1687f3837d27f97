//! The PipeWire filter-chain config for one rig.
//!
//! Names (a contract with the controller; one-based channel numbers):
//! - capture node `mugge-filters-in.<tag>`: 2 + M inputs with positions AUX0..AUX<M+1>: position 1
//!   (AUX0) is program left, 2 (AUX1) program right, then one per monitor channel in ascending
//!   channel order (PipeWire's filter-chain maps capture channels to the graph's inputs by
//!   position; FL/FR plus AUX<N-1> left the monitor inputs silent in 1.4.2). Playback node
//!   `mugge-filters-out.<tag>`: 8 channels AUX0..AUX7, output channel N -> AUX<N-1>.
//!   Both carry `mugge.profile` and `mugge.set`; neither autoconnects (the controller links).
//! - per speaker channel N: `ch<N>_conv` (convolver) -> `ch<N>_gain` (linear, control `Mult` =
//!   trim, the mute/ramp control) [-> `ch<N>_delay` (delay, control `Delay (s)` in seconds)].
//! - `in_l`, `in_r` (copy) fan the program out; `sub_sum` (mixer, `Gain 1` = `Gain 2` = 0.5) is the
//!   L+R sum at -6 dB each; monitor channel N passes through `ch<N>_mon_in` -> `ch<N>_mon` (copy).
//!
//! Only builtin, memoryless or FIR blocks are used: the no-IIR gate checks the text.

use crate::profile::Role;
use crate::validate::Rig;
use std::fmt::Write;
use std::path::Path;

/// Largest delay the generated delay blocks can hold (s); profiles allow up to 0.1 s.
pub const MAX_DELAY_S: f64 = 0.2;

/// Delay in whole samples for a profile delay in milliseconds.
pub fn delay_samples(delay_ms: f64, rate: u32) -> u32 {
    (delay_ms * f64::from(rate) / 1000.0).round() as u32
}

/// The `Delay (s)` value that makes PipeWire's delay (which truncates `delay * rate` after a
/// float32 multiply) land exactly on `samples`: aim at the middle of the sample.
pub fn delay_control_s(samples: u32, rate: u32) -> f64 {
    if samples == 0 {
        0.0
    } else {
        (f64::from(samples) + 0.5) / f64::from(rate)
    }
}

/// What the config needs to know about a set.
pub struct ConfigInput<'a> {
    pub rig: &'a Rig,
    pub tag: &'a str,
    pub set_id: &'a str,
    /// Final (absolute) directory of the set: the convolver reads `<dir>/ch<N>.wav`.
    pub dir: &'a Path,
}

/// File name of channel N's filter inside a set.
pub fn wav_name(channel: u32) -> String {
    format!("ch{channel}.wav")
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `libpipewire-module-filter-chain` module entry (shared by standalone and fragment forms).
pub fn module_entry(c: &ConfigInput<'_>) -> String {
    let p = &c.rig.profile;
    let mut speakers: Vec<_> = p.speakers.iter().collect();
    speakers.sort_by_key(|s| s.channel);
    let mut monitors: Vec<u32> = p
        .monitors
        .headphones
        .iter()
        .chain(&p.monitors.in_ears)
        .copied()
        .collect();
    monitors.sort();
    let has_sum = speakers.iter().any(|s| s.role == Role::Sum);

    let mut nodes = String::new();
    let mut links = String::new();
    let n = &mut nodes;
    let l = &mut links;
    let _ = writeln!(n, "          {{ type = builtin name = in_l label = copy }}");
    let _ = writeln!(n, "          {{ type = builtin name = in_r label = copy }}");
    if has_sum {
        let _ = writeln!(
            n,
            "          {{ type = builtin name = sub_sum label = mixer control = {{ \"Gain 1\" = 0.5 \"Gain 2\" = 0.5 }} }}"
        );
        let _ = writeln!(
            l,
            "          {{ output = \"in_l:Out\" input = \"sub_sum:In 1\" }}"
        );
        let _ = writeln!(
            l,
            "          {{ output = \"in_r:Out\" input = \"sub_sum:In 2\" }}"
        );
    }
    let mut outputs = vec!["null".to_string(); 8];
    for s in &speakers {
        let ch = s.channel;
        let file = c.dir.join(wav_name(ch));
        let _ = writeln!(
            n,
            "          {{ type = builtin name = ch{ch}_conv label = convolver config = {{ filename = {} }} }}",
            q(&file.display().to_string())
        );
        let mult = 10f64.powf(s.trim_db / 20.0);
        let _ = writeln!(
            n,
            "          {{ type = builtin name = ch{ch}_gain label = linear control = {{ \"Mult\" = {mult:.9} \"Add\" = 0.0 }} }}"
        );
        let src = match s.role {
            Role::Left => "in_l:Out",
            Role::Right => "in_r:Out",
            Role::Sum => "sub_sum:Out",
        };
        let _ = writeln!(
            l,
            "          {{ output = \"{src}\" input = \"ch{ch}_conv:In\" }}"
        );
        let _ = writeln!(
            l,
            "          {{ output = \"ch{ch}_conv:Out\" input = \"ch{ch}_gain:In\" }}"
        );
        let d = delay_samples(s.delay_ms, p.sample_rate);
        let last = if d > 0 {
            let _ = writeln!(
                n,
                "          {{ type = builtin name = ch{ch}_delay label = delay config = {{ \"max-delay\" = {MAX_DELAY_S} }} control = {{ \"Delay (s)\" = {:.9} }} }}",
                delay_control_s(d, p.sample_rate)
            );
            let _ = writeln!(
                l,
                "          {{ output = \"ch{ch}_gain:Out\" input = \"ch{ch}_delay:In\" }}"
            );
            format!("ch{ch}_delay:Out")
        } else {
            format!("ch{ch}_gain:Out")
        };
        outputs[ch as usize - 1] = format!("\"{last}\"");
    }
    let mut inputs = vec!["\"in_l:In\"".to_string(), "\"in_r:In\"".to_string()];
    let mut in_pos = vec!["AUX0".to_string(), "AUX1".to_string()];
    for &m in &monitors {
        // PipeWire 1.4's filter-graph leaves a block that is both a graph input and a graph
        // output, with no internal link, silent: the passthrough gets one internal link.
        let _ = writeln!(
            n,
            "          {{ type = builtin name = ch{m}_mon_in label = copy }}"
        );
        let _ = writeln!(
            n,
            "          {{ type = builtin name = ch{m}_mon label = copy }}"
        );
        let _ = writeln!(
            l,
            "          {{ output = \"ch{m}_mon_in:Out\" input = \"ch{m}_mon:In\" }}"
        );
        inputs.push(format!("\"ch{m}_mon_in:In\""));
        in_pos.push(format!("AUX{}", in_pos.len()));
        outputs[m as usize - 1] = format!("\"ch{m}_mon:Out\"");
    }
    let props = |kind: &str| {
        format!(
            "mugge.profile = {} mugge.set = {} mugge.tag = {} node.autoconnect = false \
             node.dont-reconnect = true stream.dont-remix = true channelmix.disable = true node.name = {}",
            q(&p.name),
            q(c.set_id),
            q(c.tag),
            q(&format!("mugge-filters-{kind}.{}", c.tag))
        )
    };
    let out_pos: Vec<String> = (0..8).map(|i| format!("AUX{i}")).collect();
    format!(
        r#"  {{ name = libpipewire-module-filter-chain
    args = {{
      node.description = {desc}
      media.name = {desc}
      audio.rate = {rate}
      filter.graph = {{
        nodes = [
{nodes}        ]
        links = [
{links}        ]
        inputs = [ {inputs} ]
        outputs = [ {outputs} ]
      }}
      capture.props = {{
        {cprops}
        audio.channels = {n_in}
        audio.position = [ {in_pos} ]
      }}
      playback.props = {{
        {pprops}
        audio.channels = 8
        audio.position = [ {out_pos} ]
      }}
    }}
  }}
"#,
        desc = q(&format!("mugge filters: {} ({})", p.name, c.tag)),
        rate = p.sample_rate,
        inputs = inputs.join(" "),
        outputs = outputs.join(" "),
        cprops = props("in"),
        pprops = props("out"),
        n_in = inputs.len(),
        in_pos = in_pos.join(" "),
        out_pos = out_pos.join(" "),
    )
}

/// A config for `pipewire -c <file>`: connects to the running daemon as a client and hosts the
/// filter-chain. Modules: rt (optional), protocol-native, client-node, adapter, filter-chain.
pub fn standalone(c: &ConfigInput<'_>) -> String {
    format!(
        r#"# mugge filter-chain, profile {profile}, set {set}, tag {tag}. Generated: do not edit.
# Run standalone: pipewire -c <this file>
context.properties = {{
  log.level = 2
}}
context.spa-libs = {{
  audio.convert.* = audioconvert/libspa-audioconvert
  support.*       = support/libspa-support
}}
context.modules = [
  {{ name = libpipewire-module-rt args = {{ nice.level = -11 }} flags = [ ifexists nofail ] }}
  {{ name = libpipewire-module-protocol-native }}
  {{ name = libpipewire-module-client-node }}
  {{ name = libpipewire-module-adapter }}
{module}]
"#,
        profile = q(&c.rig.profile.name),
        set = c.set_id,
        tag = c.tag,
        module = module_entry(c)
    )
}

/// The same filter-chain as a `pipewire.conf.d` fragment for a daemon that already loads the
/// protocol, client-node and adapter modules.
pub fn fragment(c: &ConfigInput<'_>) -> String {
    format!(
        "# mugge filter-chain fragment, profile {}, set {}, tag {}. Generated: do not edit.\n\
         context.modules = [\n{}]\n",
        q(&c.rig.profile.name),
        c.set_id,
        c.tag,
        module_entry(c)
    )
}
