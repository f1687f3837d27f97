//! A simulated room for the test stack: a filter-chain convolver from the mock interface's
//! speaker outputs to the mock measurement mic.
//!
//! [`RoomSpec`] describes each speaker's path to the mic (fractional delay, gain, low-frequency
//! roll-off, room modes, reflections); [`RoomSpec::impulse_responses`] turns it into impulse
//! responses, and [`Stack::room`] writes them as WAV files into the stack's directory and runs a
//! PipeWire filter-chain (`pipewire -c room.conf`, builtin `convolver` per speaker summed by a
//! `mixer`) with its inputs linked from `usbstreamer-out:monitor_AUX{N-1}` and its output linked
//! to `umik1-in:input_MONO`, so the mic's `capture_MONO` hears the room. Optional noise is a
//! separate stream mixed into the mic input.
//!
//! This is real convolution in the real graph; the Butterworth roll-off below is a recursion
//! used only to *synthesise* the room's impulse responses (the acoustic world), never on mugge's
//! signal path. An optional static nonlinearity (`x + a2 x^2 + a3 x^3`, from the filter graph's
//! `mult` and `mixer` builtins) runs before a speaker's convolver: a driver's distortion.

use crate::audio::Player;
use crate::process::ChildGuard;
use crate::stack::{Stack, HW_OUT, MIC};
use anyhow::{bail, Context, Result};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The simulated room's filter-chain nodes.
pub const ROOM_IN: &str = "mugge-room-in";
pub const ROOM_OUT: &str = "mugge-room-out";
pub const ROOM_NOISE: &str = "mugge-room-noise";
pub const RATE: f64 = 48_000.0;

/// A room mode: a decaying resonance excited by the direct sound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mode {
    pub freq_hz: f64,
    /// Approximate peak of the resonance alone, dB relative to the direct sound.
    pub peak_db: f64,
    /// Amplitude decay time constant, seconds (T60 = 6.9 x this).
    pub decay_s: f64,
}

/// A discrete reflection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reflection {
    /// Extra path after the direct sound, seconds.
    pub after_s: f64,
    /// Linear gain relative to the direct sound (negative inverts).
    pub gain: f64,
}

/// One speaker's path to the mic.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerPath {
    /// One-based speaker channel (`usbstreamer-out:playback_AUX{N-1}`).
    pub channel: usize,
    /// Arrival of the direct sound, samples (fractional allowed).
    pub delay_samples: f64,
    /// Linear gain of the direct sound.
    pub gain: f64,
    /// Second-order (Butterworth) low-frequency roll-off, Hz.
    pub highpass_hz: Option<f64>,
    pub modes: Vec<Mode>,
    pub reflections: Vec<Reflection>,
    /// A static nonlinearity before the path (a driver's distortion), run in the graph.
    pub nonlinearity: Option<Nonlinearity>,
}

/// `y = x + a2 x^2 + a3 x^3`, built from the filter graph's `mult` and `mixer` builtins. For
/// `x = A sin`, the second harmonic is `a2 A^2 / 2` and the third `a3 A^3 / 4` (fundamental
/// `A (1 + 3/4 a3 A^2)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nonlinearity {
    pub a2: f64,
    pub a3: f64,
}

impl Nonlinearity {
    /// Level of harmonic `k` (2 or 3) relative to the fundamental for a sine of peak `amp`, dB.
    pub fn harmonic_db(&self, k: usize, amp: f64) -> f64 {
        let fund = amp * (1.0 + 0.75 * self.a3 * amp * amp);
        let h = match k {
            2 => self.a2 * amp * amp / 2.0,
            3 => self.a3 * amp * amp * amp / 4.0,
            _ => 0.0,
        };
        20.0 * (h.abs() / fund).max(1e-20).log10()
    }
}

/// The whole room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSpec {
    pub speakers: Vec<SpeakerPath>,
    /// Impulse response length, samples.
    pub ir_len: usize,
    /// White noise at the mic, RMS dBFS (`None`: silent room).
    pub noise_dbfs: Option<f64>,
    /// How long the noise plays, seconds (after it the mic is digitally silent, which the
    /// measurement loop treats as a lost mic).
    pub noise_s: f64,
    pub seed: u64,
}

impl RoomSpec {
    /// A plausible small room: speaker N at 3 + 0.37 N ms (fractional samples), a 35 Hz roll-off,
    /// modes at 42, 67 and 110 Hz, a floor bounce and two wall reflections.
    pub fn example(speakers: usize) -> RoomSpec {
        RoomSpec {
            speakers: (1..=speakers)
                .map(|n| SpeakerPath {
                    channel: n,
                    delay_samples: 144.0 + 17.77 * n as f64,
                    gain: 0.5 / (1.0 + 0.1 * n as f64),
                    highpass_hz: Some(35.0),
                    modes: vec![
                        Mode {
                            freq_hz: 42.0,
                            peak_db: 6.0,
                            decay_s: 0.12,
                        },
                        Mode {
                            freq_hz: 67.0 + n as f64,
                            peak_db: 9.0,
                            decay_s: 0.09,
                        },
                        Mode {
                            freq_hz: 110.0,
                            peak_db: 4.0,
                            decay_s: 0.06,
                        },
                    ],
                    reflections: vec![
                        Reflection {
                            after_s: 0.0021 + 0.0003 * n as f64,
                            gain: 0.6,
                        },
                        Reflection {
                            after_s: 0.0073,
                            gain: -0.35,
                        },
                        Reflection {
                            after_s: 0.0157,
                            gain: 0.25,
                        },
                    ],
                    nonlinearity: None,
                })
                .collect(),
            ir_len: 24_000,
            noise_dbfs: None,
            noise_s: 60.0,
            seed: 1,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.speakers.is_empty() || self.speakers.len() > 8 {
            bail!("the room needs 1..=8 speakers (the mixer has 8 inputs)");
        }
        for s in &self.speakers {
            if !(1..=8).contains(&s.channel) {
                bail!("speaker channel {} outside 1..=8", s.channel);
            }
            if !(s.delay_samples >= 64.0 && s.delay_samples + 64.0 < self.ir_len as f64) {
                bail!(
                    "channel {}: delay {} samples must leave 64 samples either side",
                    s.channel,
                    s.delay_samples
                );
            }
        }
        Ok(())
    }

    /// The impulse response of every speaker path, in `speakers` order.
    pub fn impulse_responses(&self) -> Result<Vec<Vec<f32>>> {
        self.validate()?;
        Ok(self
            .speakers
            .iter()
            .map(|s| {
                let mut h = vec![0.0f64; self.ir_len];
                add_impulse(&mut h, s.delay_samples, s.gain);
                for r in &s.reflections {
                    add_impulse(&mut h, s.delay_samples + r.after_s * RATE, s.gain * r.gain);
                }
                let start = s.delay_samples.round() as usize;
                for m in &s.modes {
                    // A damped sine A e^{-t/tau} sin(wt) peaks at about A tau fs / 2 in the spectrum.
                    let a = s.gain * 10f64.powf(m.peak_db / 20.0) * 2.0 / (m.decay_s * RATE);
                    for (i, v) in h[start..].iter_mut().enumerate() {
                        let t = i as f64 / RATE;
                        *v += a * (-t / m.decay_s).exp() * (2.0 * PI * m.freq_hz * t).sin();
                    }
                }
                if let Some(fc) = s.highpass_hz {
                    highpass(&mut h, fc);
                }
                // Fade the last tenth so the truncation does not ring.
                let n = h.len();
                let fade = n / 10;
                for i in 0..fade {
                    h[n - 1 - i] *= (PI * i as f64 / (2.0 * fade as f64)).sin().powi(2);
                }
                h.iter().map(|&v| v as f32).collect()
            })
            .collect())
    }

    /// The filter-chain client config for these WAV files (one per speaker, `speakers` order).
    pub fn filter_chain_conf(&self, wavs: &[PathBuf]) -> String {
        let n = self.speakers.len();
        let mut nodes = String::new();
        let mut links = String::new();
        let mut inputs = Vec::new();
        for (i, (wav, sp)) in wavs.iter().zip(&self.speakers).enumerate() {
            nodes.push_str(&format!(
                "                    {{ type = builtin name = sp{i} label = convolver config = {{ filename = \"{}\" }} }}\n",
                wav.display()
            ));
            links.push_str(&format!(
                "                    {{ output = \"sp{i}:Out\" input = \"mix:In {}\" }}\n",
                i + 1
            ));
            match sp.nonlinearity {
                None => inputs.push(format!("\"sp{i}:In\"")),
                Some(nl) => {
                    // x -> copy; x^2 = x * x; x^3 = x^2 * x; x + a2 x^2 + a3 x^3 -> convolver.
                    for node in [
                        format!("name = sp{i}_x label = copy"),
                        format!("name = sp{i}_x2 label = mult"),
                        format!("name = sp{i}_x3 label = mult"),
                        format!(
                            "name = sp{i}_nl label = mixer control = {{ \"Gain 1\" = 1.0 \"Gain 2\" = {} \"Gain 3\" = {} }}",
                            nl.a2, nl.a3
                        ),
                    ] {
                        nodes.push_str(&format!("                    {{ type = builtin {node} }}\n"));
                    }
                    for (out, inp) in [
                        ("x:Out", "x2:In 1"),
                        ("x:Out", "x2:In 2"),
                        ("x2:Out", "x3:In 1"),
                        ("x:Out", "x3:In 2"),
                        ("x:Out", "nl:In 1"),
                        ("x2:Out", "nl:In 2"),
                        ("x3:Out", "nl:In 3"),
                    ] {
                        links.push_str(&format!(
                            "                    {{ output = \"sp{i}_{out}\" input = \"sp{i}_{inp}\" }}\n"
                        ));
                    }
                    links.push_str(&format!(
                        "                    {{ output = \"sp{i}_nl:Out\" input = \"sp{i}:In\" }}\n"
                    ));
                    inputs.push(format!("\"sp{i}_x:In\""));
                }
            }
        }
        let positions = (0..n)
            .map(|i| format!("AUX{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            r#"# mugge test stack: simulated room (generated by mugge-testkit room.rs)
context.properties = {{ log.level = 2 }}
context.spa-libs = {{
    audio.convert.* = audioconvert/libspa-audioconvert
    support.*       = support/libspa-support
}}
context.modules = [
    {{ name = libpipewire-module-rt args = {{ }} flags = [ ifexists nofail ] }}
    {{ name = libpipewire-module-protocol-native }}
    {{ name = libpipewire-module-client-node }}
    {{ name = libpipewire-module-adapter }}
    {{ name = libpipewire-module-filter-chain
        args = {{
            node.description = "mugge simulated room"
            media.name       = "mugge simulated room"
            filter.graph = {{
                nodes = [
{nodes}                    {{ type = builtin name = mix label = mixer }}
                ]
                links = [
{links}                ]
                inputs  = [ {inputs} ]
                outputs = [ "mix:Out" ]
            }}
            capture.props = {{
                node.name         = "{ROOM_IN}"
                audio.channels    = {n}
                audio.position    = [ {positions} ]
                node.autoconnect  = false
                stream.dont-remix = true
            }}
            playback.props = {{
                node.name         = "{ROOM_OUT}"
                audio.channels    = 1
                audio.position    = [ MONO ]
                node.autoconnect  = false
                stream.dont-remix = true
            }}
        }}
    }}
]
"#,
            inputs = inputs.join(" ")
        )
    }
}

/// A running simulated room; dropping it stops the filter-chain and the noise.
pub struct Room {
    /// The impulse responses that are convolving, in `speakers` order (the ground truth).
    pub irs: Vec<Vec<f32>>,
    pub spec: RoomSpec,
    pub dir: PathBuf,
    _chain: ChildGuard,
    _noise: Option<Player>,
}

impl Room {
    /// Scales every speaker path by `gain` (linear) at run time through the mixer's `Gain N`
    /// controls: a sudden change of the room, e.g. the +20 dB jump (`gain = 10`) the safety
    /// layer must catch.
    pub fn set_gain(&self, stack: &Stack, gain: f64) -> Result<()> {
        if !(gain.is_finite() && gain >= 0.0) {
            bail!("room gain {gain} must be finite and >= 0");
        }
        let g = stack.dump()?;
        let node = g
            .node(ROOM_IN)
            .with_context(|| format!("{ROOM_IN} is gone"))?;
        let params = (1..=self.spec.speakers.len())
            .map(|i| format!("\"mix:Gain {i}\" {gain}"))
            .collect::<Vec<_>>()
            .join(" ");
        stack
            .pw_cli(&[
                "set-param",
                &node.id.to_string(),
                "Props",
                &format!("{{ params = [ {params} ] }}"),
            ])
            .map(|_| ())
    }

    /// Unlinks the room from the mic's input, as if the mic cable were pulled.
    pub fn disconnect_mic(&self, stack: &Stack) -> Result<()> {
        stack
            .run(
                "pw-link",
                &[
                    "-d",
                    &format!("{ROOM_OUT}:output_MONO"),
                    &format!("{MIC}:input_MONO"),
                ],
            )
            .map(|_| ())
    }
}

impl Stack {
    /// Starts the simulated room and links it between the speaker monitors and the mic input.
    pub fn room(&self, spec: &RoomSpec) -> Result<Room> {
        let irs = spec.impulse_responses()?;
        let dir = self.root().join("room");
        std::fs::create_dir_all(&dir)?;
        let mut wavs = Vec::new();
        for (s, ir) in spec.speakers.iter().zip(&irs) {
            let path = dir.join(format!("speaker{}.wav", s.channel));
            write_wav(&path, ir)?;
            wavs.push(path);
        }
        let conf = dir.join("room.conf");
        std::fs::write(&conf, spec.filter_chain_conf(&wavs))?;
        let mut cmd = Command::new("pipewire");
        cmd.arg("-c").arg(&conf);
        let chain = self.spawn("room", &cmd)?;
        let t = Duration::from_secs(20);
        let last = spec.speakers.len() - 1;
        self.wait_for_port(ROOM_IN, &format!("input_AUX{last}"), t)
            .with_context(|| format!("room log:\n{}", self.log("room")))?;
        self.wait_for_port(ROOM_OUT, "output_MONO", t)?;
        for (i, s) in spec.speakers.iter().enumerate() {
            let from = format!("{HW_OUT}:monitor_AUX{}", s.channel - 1);
            let to = format!("{ROOM_IN}:input_AUX{i}");
            self.link(&from, &to)?;
            self.wait_for_link(&from, &to, t)?;
        }
        let (out, mic) = (
            format!("{ROOM_OUT}:output_MONO"),
            format!("{MIC}:input_MONO"),
        );
        self.link(&out, &mic)?;
        self.wait_for_link(&out, &mic, t)?;
        let noise = match spec.noise_dbfs {
            Some(level) => {
                // Uniform white noise at `level` dBFS RMS (uniform RMS = peak / sqrt 3).
                let peak = 10f64.powf(level / 20.0) * 3f64.sqrt();
                let mut rng = spec.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let samples = (0..(spec.noise_s * RATE) as usize)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (peak * (2.0 * (rng >> 11) as f64 / (1u64 << 53) as f64 - 1.0)) as f32
                    })
                    .collect();
                let p = self.play(ROOM_NOISE, 1, samples)?;
                self.link(&p.port(1), &mic)?;
                self.wait_for_link(&p.port(1), &mic, t)?;
                Some(p)
            }
            None => None,
        };
        Ok(Room {
            irs,
            spec: spec.clone(),
            dir,
            _chain: chain,
            _noise: noise,
        })
    }
}

/// Adds a band-limited impulse (Blackman-windowed sinc, cut at 0.9 Nyquist, +-64 samples).
fn add_impulse(h: &mut [f64], at: f64, gain: f64) {
    const HALF: f64 = 64.0;
    const FC: f64 = 0.9;
    let lo = (at - HALF).ceil().max(0.0) as usize;
    let hi = ((at + HALF).floor() as usize).min(h.len().saturating_sub(1));
    for (n, v) in h.iter_mut().enumerate().take(hi + 1).skip(lo) {
        let x = n as f64 - at;
        let u = x / HALF;
        let w = 0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos();
        let s = if x.abs() < 1e-12 {
            1.0
        } else {
            (PI * FC * x).sin() / (PI * FC * x)
        };
        *v += gain * FC * s * w;
    }
}

/// Second-order Butterworth high-pass (bilinear transform), in place: the speaker's roll-off.
fn highpass(h: &mut [f64], fc: f64) {
    let w0 = 2.0 * PI * fc / RATE;
    let alpha = w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
    let cw = w0.cos();
    let a0 = 1.0 + alpha;
    let (b0, b1, b2) = (
        (1.0 + cw) / 2.0 / a0,
        -(1.0 + cw) / a0,
        (1.0 + cw) / 2.0 / a0,
    );
    let (a1, a2) = (-2.0 * cw / a0, (1.0 - alpha) / a0);
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    for v in h.iter_mut() {
        let x = *v;
        let y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
        (x2, x1, y2, y1) = (x1, x, y1, y);
        *v = y;
    }
}

/// Mono 32-bit float WAV at 48 kHz, the format PipeWire's convolver reads via libsndfile.
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating {}", path.display()))?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impulse_responses_have_their_direct_sound_where_asked() {
        let spec = RoomSpec::example(3);
        let irs = spec.impulse_responses().unwrap();
        assert_eq!(irs.len(), 3);
        for (s, h) in spec.speakers.iter().zip(&irs) {
            assert_eq!(h.len(), spec.ir_len);
            let peak = h
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            assert!(
                (peak as f64 - s.delay_samples).abs() <= 1.0,
                "peak {peak} vs {}",
                s.delay_samples
            );
            // Nothing before the direct sound's band-limit kernel.
            let before = s.delay_samples as usize - 65;
            assert!(h[..before].iter().all(|v| v.abs() < 1e-6));
        }
    }

    #[test]
    fn the_config_names_every_convolver_and_the_mixer() {
        let spec = RoomSpec::example(2);
        let conf = spec.filter_chain_conf(&[PathBuf::from("/x/a.wav"), PathBuf::from("/x/b.wav")]);
        for needle in [
            "libpipewire-module-protocol-native",
            "libpipewire-module-client-node",
            "libpipewire-module-adapter",
            "flags = [ ifexists nofail ]",
            "libpipewire-module-filter-chain",
            "filename = \"/x/a.wav\"",
            "filename = \"/x/b.wav\"",
            "{ output = \"sp1:Out\" input = \"mix:In 2\" }",
            "inputs  = [ \"sp0:In\" \"sp1:In\" ]",
            "audio.position    = [ AUX0 AUX1 ]",
            "node.name         = \"mugge-room-out\"",
        ] {
            assert!(conf.contains(needle), "missing {needle}:\n{conf}");
        }
    }

    #[test]
    fn a_nonlinear_speaker_gets_its_polynomial_in_the_graph() {
        let mut spec = RoomSpec::example(1);
        spec.speakers[0].nonlinearity = Some(Nonlinearity { a2: 0.2, a3: 1.5 });
        let conf = spec.filter_chain_conf(&[PathBuf::from("/x/a.wav")]);
        for needle in [
            "name = sp0_x2 label = mult",
            "name = sp0_x3 label = mult",
            "\"Gain 2\" = 0.2 \"Gain 3\" = 1.5",
            "{ output = \"sp0_x2:Out\" input = \"sp0_x3:In 1\" }",
            "{ output = \"sp0_nl:Out\" input = \"sp0:In\" }",
            "inputs  = [ \"sp0_x:In\" ]",
        ] {
            assert!(conf.contains(needle), "missing {needle}:\n{conf}");
        }
        let nl = Nonlinearity { a2: 0.2, a3: 0.0 };
        assert!((nl.harmonic_db(2, 0.1) - 20.0 * 0.01f64.log10()).abs() < 1e-9);
    }

    #[test]
    fn bad_rooms_are_rejected() {
        let mut spec = RoomSpec::example(1);
        spec.speakers[0].delay_samples = 10.0;
        assert!(spec.impulse_responses().is_err());
        let mut spec = RoomSpec::example(1);
        spec.speakers[0].channel = 9;
        assert!(spec.impulse_responses().is_err());
        assert!(RoomSpec::example(9).impulse_responses().is_err());
    }
}
