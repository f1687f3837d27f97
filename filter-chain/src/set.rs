//! A matched set on disk: `ch<N>.wav` (float32 mono) per speaker channel, `filter-chain.conf`
//! (standalone), `filter-chain.fragment.conf` and `manifest.json`. Written into a temporary sibling
//! directory and renamed into place, so a set is complete or absent.

use crate::config::{self, delay_samples, ConfigInput};
use crate::gates::{self, Analyzer, ChannelReport, Failure};
use crate::generate::{generate, ChannelFilter, CorrectionFor};
use crate::profile::{Polarity, Role};
use crate::validate::Rig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
pub const CONFIG: &str = "filter-chain.conf";
pub const FRAGMENT: &str = "filter-chain.fragment.conf";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub set_id: String,
    pub tag: String,
    pub profile_name: String,
    pub profile_file: String,
    pub profile_sha256: String,
    /// The validated profile as it was used.
    pub profile: crate::profile::Profile,
    pub topology: String,
    pub taps: usize,
    pub sample_rate: u32,
    pub global_attenuation_db: f64,
    pub live_mode_available: bool,
    pub warnings: Vec<String>,
    pub channels: Vec<ManifestChannel>,
    pub monitors: Vec<u32>,
    /// file name -> sha256 (hex), every file of the set except the manifest.
    pub files: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestChannel {
    pub channel: u32,
    pub name: String,
    pub identity: String,
    pub role: Role,
    pub band: u32,
    pub polarity: Polarity,
    pub trim_db: f64,
    pub delay_ms: f64,
    pub delay_samples: u32,
    pub mandatory_hpf_hz: f64,
    pub file: String,
    pub gates: ChannelReport,
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("gates failed, nothing written:\n{}", .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Gates(Vec<Failure>),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Wav(PathBuf, hound::Error),
    #[error("{0}: bad manifest: {1}")]
    Manifest(PathBuf, serde_json::Error),
    #[error("verify {0}: {1}")]
    Verify(PathBuf, String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> SetError + '_ {
    move |e| SetError::Io(p.to_path_buf(), e)
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn wav_bytes(taps: &[f32], rate: u32) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec)?;
        for &t in taps {
            w.write_sample(t)?;
        }
        w.finalize()?;
    }
    Ok(cur.into_inner())
}

/// Reads a float32 mono WAV.
pub fn read_wav(p: &Path) -> Result<(Vec<f32>, u32), SetError> {
    let mut r = hound::WavReader::open(p).map_err(|e| SetError::Wav(p.into(), e))?;
    let spec = r.spec();
    if spec.channels != 1 || spec.sample_format != hound::SampleFormat::Float {
        return Err(SetError::Verify(p.into(), "not a float32 mono WAV".into()));
    }
    let taps = r
        .samples::<f32>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetError::Wav(p.into(), e))?;
    Ok((taps, spec.sample_rate))
}

/// Generates, gates and writes a set for `rig` to `out` (which must not be inside a set being
/// served: an existing `out` is replaced only after the new set is complete).
pub fn write_set(
    rig: &Rig,
    profile_text: &str,
    out: &Path,
    tag: &str,
    correction: Option<CorrectionFor<'_>>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Manifest, SetError> {
    let filters = generate(rig, correction, progress).map_err(SetError::Gates)?;
    write_filters(rig, profile_text, out, tag, &filters)
}

/// Writes already gated filters as a set (see `write_set`).
pub fn write_filters(
    rig: &Rig,
    profile_text: &str,
    out: &Path,
    tag: &str,
    filters: &[ChannelFilter],
) -> Result<Manifest, SetError> {
    let p = &rig.profile;
    let out_abs = absolute(out)?;
    let parent = out_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;

    let mut files = std::collections::BTreeMap::new();
    let mut blobs = Vec::new();
    let mut set_hash = Sha256::new();
    set_hash.update(profile_text.as_bytes());
    for f in filters {
        let bytes = wav_bytes(&f.taps, p.sample_rate).map_err(|e| SetError::Wav(out.into(), e))?;
        let name = config::wav_name(f.channel);
        let h = hex(Sha256::digest(&bytes));
        set_hash.update(h.as_bytes());
        files.insert(name.clone(), h);
        blobs.push((name, bytes));
    }
    // A letter first: PipeWire parses a property like "5873529854e5" as a number.
    let set_id = format!("s{}", &hex(set_hash.finalize())[..12]);
    let ci = ConfigInput {
        rig,
        tag,
        set_id: &set_id,
        dir: &out_abs,
    };
    let conf = config::standalone(&ci);
    let frag = config::fragment(&ci);
    for text in [&conf, &frag] {
        gates::check_config(text).map_err(SetError::Gates)?;
    }
    for (name, text) in [(CONFIG, conf), (FRAGMENT, frag)] {
        files.insert(name.into(), hex(Sha256::digest(text.as_bytes())));
        blobs.push((name.into(), text.into_bytes()));
    }

    let channels = filters
        .iter()
        .map(|f| {
            let sp = &p.speakers[f.speaker];
            ManifestChannel {
                channel: f.channel,
                name: sp.name.clone(),
                identity: sp.identity.clone(),
                role: sp.role,
                band: sp.band,
                polarity: sp.polarity,
                trim_db: sp.trim_db,
                delay_ms: sp.delay_ms,
                delay_samples: delay_samples(sp.delay_ms, p.sample_rate),
                mandatory_hpf_hz: rig.identity_of(sp).mandatory_hpf_hz.unwrap_or(0.0),
                file: config::wav_name(f.channel),
                gates: f.report.clone(),
            }
        })
        .collect();
    let mut monitors: Vec<u32> = p
        .monitors
        .headphones
        .iter()
        .chain(&p.monitors.in_ears)
        .copied()
        .collect();
    monitors.sort();
    let manifest = Manifest {
        set_id,
        tag: tag.into(),
        profile_name: p.name.clone(),
        profile_file: rig.file.clone(),
        profile_sha256: hex(Sha256::digest(profile_text.as_bytes())),
        profile: p.clone(),
        topology: p.topology.label().into(),
        taps: p.taps,
        sample_rate: p.sample_rate,
        global_attenuation_db: rig.global_attenuation_db(),
        live_mode_available: rig.live_mode_available,
        warnings: rig.warnings.clone(),
        channels,
        monitors,
        files,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| SetError::Manifest(out.into(), e))?;
    blobs.push((MANIFEST.into(), json));

    let name = out_abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "set".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    for (n, b) in &blobs {
        let fp = tmp.join(n);
        std::fs::write(&fp, b).map_err(io(&fp))?;
    }
    // The set becomes visible in one rename; a previous set at `out` is moved aside first.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if out_abs.exists() {
        std::fs::rename(&out_abs, &old).map_err(io(&out_abs))?;
    }
    std::fs::rename(&tmp, &out_abs).map_err(io(&out_abs))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(manifest)
}

fn absolute(p: &Path) -> Result<PathBuf, SetError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        let cwd = std::env::current_dir().map_err(io(p))?;
        Ok(cwd.join(p))
    }
}

/// Reads a set's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, SetError> {
    let mp = dir.join(MANIFEST);
    let bytes = std::fs::read(&mp).map_err(io(&mp))?;
    serde_json::from_slice(&bytes).map_err(|e| SetError::Manifest(mp, e))
}

/// Re-checks a set on disk: every hash, every WAV's format and length, every gate on the stored
/// taps, and the no-IIR gate on both configs. Returns the manifest and fresh gate reports.
pub fn verify(dir: &Path) -> Result<(Manifest, Vec<(u32, ChannelReport)>), SetError> {
    let m = read_manifest(dir)?;
    for (name, want) in &m.files {
        let fp = dir.join(name);
        let bytes = std::fs::read(&fp).map_err(io(&fp))?;
        let got = hex(Sha256::digest(&bytes));
        if &got != want {
            return Err(SetError::Verify(
                fp,
                format!("sha256 {got} does not match the manifest's {want}"),
            ));
        }
    }
    for name in [CONFIG, FRAGMENT] {
        let fp = dir.join(name);
        let text = std::fs::read_to_string(&fp).map_err(io(&fp))?;
        gates::check_config(&text).map_err(SetError::Gates)?;
    }
    let mut an = Analyzer::new(m.taps);
    let mut reports = Vec::new();
    let mut fails = Vec::new();
    for c in &m.channels {
        let fp = dir.join(&c.file);
        let (taps, rate) = read_wav(&fp)?;
        if rate != m.sample_rate || taps.len() != m.taps {
            return Err(SetError::Verify(
                fp,
                format!(
                    "{} taps at {rate} Hz, manifest says {} at {}",
                    taps.len(),
                    m.taps,
                    m.sample_rate
                ),
            ));
        }
        match an.check(
            c.channel,
            &taps,
            f64::from(rate),
            Some(c.mandatory_hpf_hz).filter(|h| *h > 0.0),
        ) {
            Ok(r) => reports.push((c.channel, r)),
            Err(f) => fails.extend(f),
        }
    }
    if !fails.is_empty() {
        return Err(SetError::Gates(fails));
    }
    Ok((m, reports))
}
