//! The hardware rules (`wireplumber/51-mugge-hardware.conf`) evaluated by WirePlumber's own rule
//! engine (`JsonUtils.match_rules_update_properties`, the call its ALSA monitor makes for every
//! device and node) on the properties the ALSA monitor would give the real devices. No sound card
//! is needed; `wpexec` only needs a PipeWire daemon to connect to. The Lua here is test harness
//! only: the product's WirePlumber configuration has none.

use std::collections::BTreeMap;

use mugge_testkit::Stack;

use crate::setup::assets::WIREPLUMBER_FRAGMENTS;

/// Reads the fragment with WirePlumber's config loader and prints, per case, the properties the
/// rules produce as `index|key=value|...`.
const HARNESS: &str = r#"
local args = (...):parse ()
local conf = Conf (args["file"])
conf:open ()
local rules = conf:get_section_as_json ("monitor.alsa.rules", Json.Array {})
for i, case in ipairs (CASES) do
  local out = JsonUtils.match_rules_update_properties (rules, case)
  local line = tostring (i)
  for _, k in ipairs (KEYS) do
    line = line .. "|" .. k .. "=" .. tostring (out[k])
  end
  print (line)
end
Core.quit ()
"#;

const KEYS: [&str; 8] = [
    "node.name",
    "device.profile",
    "audio.channels",
    "audio.position",
    "priority.driver",
    "priority.session",
    "node.group",
    "session.suspend-timeout-seconds",
];

fn lua_table(props: &[(&str, &str)]) -> String {
    let fields: Vec<String> = props
        .iter()
        .map(|(k, v)| format!("[{k:?}] = {v:?}"))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

/// Runs the rules on each property set; returns the resulting properties per case.
fn evaluate(cases: &[Vec<(&str, &str)>]) -> Vec<BTreeMap<String, String>> {
    let stack = Stack::builder().without_wireplumber().start().unwrap();
    let (name, text) = WIREPLUMBER_FRAGMENTS
        .iter()
        .find(|(n, _)| *n == "51-mugge-hardware.conf")
        .unwrap();
    let conf = stack.root().join(name);
    std::fs::write(&conf, text).unwrap();
    let script = format!(
        "CASES = {{ {} }}\nKEYS = {{ {} }}\n{HARNESS}",
        cases
            .iter()
            .map(|c| lua_table(c))
            .collect::<Vec<_>>()
            .join(", "),
        KEYS.iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let path = stack.root().join("rules.lua");
    std::fs::write(&path, script).unwrap();
    let arg = format!("{{ file = {:?} }}", conf.to_str().unwrap());
    let out = stack
        .run("wpexec", &[path.to_str().unwrap(), &arg])
        .unwrap();
    let results: Vec<BTreeMap<String, String>> = out
        .lines()
        .filter(|l| l.contains('|'))
        .map(|l| {
            l.split('|')
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    assert_eq!(results.len(), cases.len(), "wpexec printed:\n{out}");
    results
}

const STREAMER_OUT: &str = "alsa_output.usb-miniDSP_USBStreamer_00001-00.pro-output-0";
const STREAMER_IN: &str = "alsa_input.usb-miniDSP_USBStreamer_00001-00.pro-input-0";

#[test]
fn real_devices_get_the_contract_names_and_clocking() {
    let cases = vec![
        vec![
            ("device.name", "alsa_card.usb-miniDSP_USBStreamer_00001-00"),
            ("api.alsa.card.name", "USBStreamer"),
        ],
        vec![
            ("node.name", STREAMER_OUT),
            ("api.alsa.card.name", "USBStreamer"),
            ("media.class", "Audio/Sink"),
        ],
        vec![
            ("node.name", STREAMER_IN),
            ("api.alsa.card.name", "USBStreamer"),
            ("media.class", "Audio/Source"),
        ],
        vec![
            (
                "node.name",
                "alsa_input.usb-miniDSP_Umik-1_Gain__18dB_00002-00.mono-fallback",
            ),
            ("api.alsa.card.name", "Umik-1  Gain: 18dB"),
            ("media.class", "Audio/Source"),
        ],
        // Another firmware spelling, matched by the card name alone.
        vec![
            (
                "node.name",
                "alsa_input.usb-miniDSP_Ltd_MIC-00.analog-stereo",
            ),
            ("api.alsa.card.name", "UMIK-1"),
            ("media.class", "Audio/Source"),
        ],
    ];
    let r = evaluate(&cases);
    assert_eq!(r[0]["device.profile"], "pro-audio");

    assert_eq!(r[1]["node.name"], "usbstreamer-out");
    assert_eq!(r[1]["audio.channels"], "8");
    assert_eq!(
        r[1]["audio.position"],
        "[ AUX0 AUX1 AUX2 AUX3 AUX4 AUX5 AUX6 AUX7 ]"
    );
    assert_eq!(r[1]["priority.driver"], "300000");
    assert_eq!(r[1]["priority.session"], "0");
    assert_eq!(r[1]["node.group"], "mugge.hw");
    assert_eq!(r[1]["session.suspend-timeout-seconds"], "0");

    assert_eq!(r[2]["node.name"], "usbstreamer-in");
    assert_eq!(r[2]["audio.channels"], "8");
    assert_eq!(r[2]["node.group"], "mugge.hw");
    assert!(r[2]["priority.driver"].parse::<u32>().unwrap() < 300000);

    for mic in &r[3..5] {
        assert_eq!(mic["node.name"], "umik1-in");
        assert_eq!(mic["audio.channels"], "1");
        assert_eq!(mic["audio.position"], "[ MONO ]");
        assert_eq!(mic["priority.session"], "0");
        assert_eq!(mic["priority.driver"], "1");
        // Its own USB clock: never grouped with the interface.
        assert_eq!(mic["node.group"], "nil");
    }
}

#[test]
fn other_devices_are_left_alone() {
    let cases = vec![
        vec![
            (
                "node.name",
                "alsa_output.platform-fef00700.hdmi.hdmi-stereo",
            ),
            ("api.alsa.card.name", "vc4hdmi0"),
            ("media.class", "Audio/Sink"),
        ],
        vec![
            (
                "node.name",
                "alsa_output.usb-Focusrite_Scarlett_2i2_USB-00.analog-stereo",
            ),
            ("api.alsa.card.name", "Scarlett 2i2 USB"),
            ("media.class", "Audio/Sink"),
        ],
        vec![
            ("device.name", "alsa_card.usb-Focusrite_Scarlett_2i2_USB-00"),
            ("api.alsa.card.name", "Scarlett 2i2 USB"),
        ],
    ];
    let r = evaluate(&cases);
    assert_eq!(
        r[0]["node.name"],
        "alsa_output.platform-fef00700.hdmi.hdmi-stereo"
    );
    assert_eq!(r[0]["priority.session"], "nil");
    assert_eq!(
        r[1]["node.name"],
        "alsa_output.usb-Focusrite_Scarlett_2i2_USB-00.analog-stereo"
    );
    assert_eq!(r[2]["device.profile"], "nil");
}
