//! Profile validation: typed TOML -> a checked `Rig`, or every problem found, each naming the file,
//! the field and (where one applies) the one-based output channel. Nothing downstream runs on a
//! profile that did not pass here.

use crate::profile::{Enclosure, EqKind, Identity, Profile, Role, Topology};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub field: String,
    /// One-based output channel, when the problem belongs to one.
    pub channel: Option<u32>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.field)?;
        if let Some(ch) = self.channel {
            write!(f, " (channel {ch})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All refusals for one profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A profile that passed validation, with the identities it uses.
#[derive(Debug, Clone)]
pub struct Rig {
    pub file: String,
    pub profile: Profile,
    /// Identity id (file stem) -> identity.
    pub identities: BTreeMap<String, Identity>,
    /// Loud warnings that do not refuse the profile (4-way, no in-ears).
    pub warnings: Vec<String>,
    /// Live mode needs in-ear channels.
    pub live_mode_available: bool,
}

impl Rig {
    pub fn identity_of(&self, speaker: &crate::profile::Speaker) -> &Identity {
        &self.identities[&speaker.identity]
    }
    /// -(largest max_boost_db + 0.5) dB, applied to every channel.
    pub fn global_attenuation_db(&self) -> f64 {
        let max_boost = self
            .profile
            .speakers
            .iter()
            .map(|s| self.identity_of(s).max_boost_db)
            .fold(0.0, f64::max);
        -(max_boost + 0.5)
    }
}

/// Where a profile's identities come from: id -> (file label, TOML text), None if absent.
pub type IdentitySource<'a> = dyn Fn(&str) -> Option<(String, String)> + 'a;

/// Reads a profile file; identities from `speakers_dir` or `<profile dir>/../speakers`.
pub fn load_rig(profile_path: &Path, speakers_dir: Option<&Path>) -> Result<Rig, Problems> {
    let file = profile_path.display().to_string();
    let text = std::fs::read_to_string(profile_path).map_err(|e| {
        Problems(vec![Problem {
            file: file.clone(),
            field: "(file)".into(),
            channel: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let dir: PathBuf = match speakers_dir {
        Some(d) => d.to_path_buf(),
        None => profile_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("..")
            .join("speakers"),
    };
    let source = |id: &str| {
        let p = dir.join(format!("{id}.toml"));
        std::fs::read_to_string(&p)
            .ok()
            .map(|t| (p.display().to_string(), t))
    };
    check_rig(&file, &text, &source)
}

/// Parses and validates a profile text; every problem is collected.
pub fn check_rig(file: &str, text: &str, identities: &IdentitySource<'_>) -> Result<Rig, Problems> {
    let profile: Profile = toml::from_str(text).map_err(|e| {
        Problems(vec![Problem {
            file: file.into(),
            field: toml_field(&e),
            channel: None,
            message: e.message().to_string(),
        }])
    })?;
    let mut v = Checker {
        file: file.into(),
        problems: Vec::new(),
    };
    let ids = v.identities(&profile, identities);
    v.profile(&profile);
    if !v.problems.is_empty() {
        return Err(Problems(v.problems));
    }
    let mut warnings = Vec::new();
    if profile.topology == Topology::FourWay {
        warnings.push(format!(
            "WARNING: {file}: 4-way uses all 8 outputs for speakers: NO headphone or in-ear \
             monitoring (evaluation only, not for gigs)"
        ));
    }
    let live = !profile.monitors.in_ears.is_empty();
    if !live {
        warnings.push(format!(
            "{file}: Live mode unavailable: the profile has no in-ear channels"
        ));
    }
    Ok(Rig {
        file: file.into(),
        profile,
        identities: ids,
        warnings,
        live_mode_available: live,
    })
}

fn toml_field(e: &toml::de::Error) -> String {
    // toml names the key in its message ("missing field `x`", "unknown field `x`"); keep its
    // byte span as the location when it has one.
    match e.span() {
        Some(s) => format!("(bytes {}..{})", s.start, s.end),
        None => "(document)".into(),
    }
}

struct Checker {
    file: String,
    problems: Vec<Problem>,
}

impl Checker {
    fn refuse(&mut self, file: &str, field: impl Into<String>, channel: Option<u32>, msg: String) {
        self.problems.push(Problem {
            file: file.into(),
            field: field.into(),
            channel,
            message: msg,
        });
    }

    fn identities(
        &mut self,
        profile: &Profile,
        source: &IdentitySource<'_>,
    ) -> BTreeMap<String, Identity> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeMap::new();
        let nyquist = f64::from(profile.sample_rate) / 2.0;
        for (i, sp) in profile.speakers.iter().enumerate() {
            if seen.contains_key(&sp.identity) {
                continue;
            }
            seen.insert(sp.identity.clone(), ());
            let ch = Some(sp.channel);
            let Some((ifile, text)) = source(&sp.identity) else {
                let f = self.file.clone();
                self.refuse(
                    &f,
                    format!("speaker[{}].identity", i + 1),
                    ch,
                    format!("unknown speaker identity `{}` (no such file)", sp.identity),
                );
                continue;
            };
            match toml::from_str::<Identity>(&text) {
                Err(e) => {
                    self.refuse(&ifile, toml_field(&e), ch, e.message().to_string());
                }
                Ok(id) => {
                    self.identity(&ifile, &id, ch, nyquist);
                    out.insert(sp.identity.clone(), id);
                }
            }
        }
        out
    }

    fn identity(&mut self, f: &str, id: &Identity, ch: Option<u32>, nyquist: f64) {
        let hpf = id.mandatory_hpf_hz;
        match hpf {
            None => self.refuse(
                f,
                "mandatory_hpf_hz",
                ch,
                format!(
                    "missing: speaker identity `{}` must declare its protection high-pass in Hz",
                    id.name
                ),
            ),
            Some(h) if !(10.0..=5000.0).contains(&h) => self.refuse(
                f,
                "mandatory_hpf_hz",
                ch,
                format!("bad units: expected Hz in 10..=5000, got {h}"),
            ),
            _ => {}
        }
        if !(0.0..=20.0).contains(&id.max_boost_db) {
            self.refuse(
                f,
                "max_boost_db",
                ch,
                format!("bad units: expected dB in 0..=20, got {}", id.max_boost_db),
            );
        }
        let boosts = id.max_boost_db > 0.0 || id.eq.iter().any(|b| b.gain_db > 0.0);
        if boosts && hpf.is_none() {
            self.refuse(
                f,
                "max_boost_db",
                ch,
                "boost without a high-pass: a boosting speaker needs mandatory_hpf_hz".into(),
            );
        }
        if let Enclosure::Ported { port_tuning_hz } = &id.enclosure {
            if port_tuning_hz.is_empty() {
                self.refuse(
                    f,
                    "enclosure.port_tuning_hz",
                    ch,
                    "a ported enclosure needs at least one tuning frequency".into(),
                );
            }
            for t in port_tuning_hz {
                if !(10.0..=300.0).contains(t) {
                    self.refuse(
                        f,
                        "enclosure.port_tuning_hz",
                        ch,
                        format!("bad units: expected Hz in 10..=300, got {t}"),
                    );
                }
            }
        }
        for (name, v, lo, hi) in [
            ("impedance_ohm", id.impedance_ohm, 1.0, 64.0),
            ("sensitivity_db_spl", id.sensitivity_db_spl, 60.0, 130.0),
            ("power_limit_w", id.power_limit_w, 1.0, 20_000.0),
        ] {
            if let Some(v) = v {
                if !(lo..=hi).contains(&v) {
                    self.refuse(
                        f,
                        name,
                        ch,
                        format!("bad units: expected {lo}..={hi}, got {v}"),
                    );
                }
            }
        }
        for (i, b) in id.eq.iter().enumerate() {
            let field = format!("eq[{}]", i + 1);
            if !(10.0..nyquist).contains(&b.freq_hz) {
                self.refuse(
                    f,
                    format!("{field}.freq_hz"),
                    ch,
                    format!("bad units: expected Hz in 10..{nyquist}, got {}", b.freq_hz),
                );
            }
            if !(0.1..=20.0).contains(&b.q) {
                self.refuse(
                    f,
                    format!("{field}.q"),
                    ch,
                    format!("expected 0.1..=20, got {}", b.q),
                );
            }
            if !(-30.0..=20.0).contains(&b.gain_db) {
                self.refuse(
                    f,
                    format!("{field}.gain_db"),
                    ch,
                    format!("bad units: expected dB in -30..=20, got {}", b.gain_db),
                );
            }
            if b.gain_db > id.max_boost_db {
                self.refuse(
                    f,
                    format!("{field}.gain_db"),
                    ch,
                    format!(
                        "boost of {} dB exceeds max_boost_db = {} dB",
                        b.gain_db, id.max_boost_db
                    ),
                );
            }
            if let Some(h) = hpf {
                let below = match b.kind {
                    EqKind::Peak | EqKind::LowShelf => b.freq_hz < h,
                    EqKind::HighShelf => false,
                };
                if b.gain_db > 0.0 && below {
                    self.refuse(
                        f,
                        format!("{field}.freq_hz"),
                        ch,
                        format!(
                            "boost at {} Hz is below mandatory_hpf_hz = {h} Hz (boost without a \
                             high-pass)",
                            b.freq_hz
                        ),
                    );
                }
            }
        }
    }

    fn profile(&mut self, p: &Profile) {
        let f = self.file.clone();
        let f = f.as_str();
        if p.taps != 16_384 && p.taps != 8_192 {
            self.refuse(
                f,
                "taps",
                None,
                format!("expected 16384 (default) or 8192, got {}", p.taps),
            );
        }
        if ![44_100, 48_000, 96_000].contains(&p.sample_rate) {
            self.refuse(
                f,
                "sample_rate",
                None,
                format!(
                    "bad units: expected Hz (44100, 48000 or 96000), got {}",
                    p.sample_rate
                ),
            );
        }
        let nyquist = f64::from(p.sample_rate) / 2.0;
        let bands = p.topology.bands();
        if p.crossovers.len() != bands - 1 {
            self.refuse(
                f,
                "crossover",
                None,
                format!(
                    "topology {} needs {} crossover point(s), the list has {}",
                    p.topology.label(),
                    bands - 1,
                    p.crossovers.len()
                ),
            );
        }
        let mut last = 0.0;
        for (i, x) in p.crossovers.iter().enumerate() {
            let field = format!("crossover[{}]", i + 1);
            if !(20.0..nyquist * 0.9).contains(&x.freq_hz) {
                self.refuse(
                    f,
                    format!("{field}.freq_hz"),
                    None,
                    format!(
                        "bad units: expected Hz in 20..{}, got {}",
                        nyquist * 0.9,
                        x.freq_hz
                    ),
                );
            }
            if x.freq_hz <= last {
                self.refuse(
                    f,
                    format!("{field}.freq_hz"),
                    None,
                    "crossover points must ascend".into(),
                );
            }
            last = x.freq_hz;
            if x.slope_db_per_oct != 24 && x.slope_db_per_oct != 48 {
                self.refuse(
                    f,
                    format!("{field}.slope_db_per_oct"),
                    None,
                    format!(
                        "Linkwitz-Riley slopes are 24 (LR4) or 48 (LR8) dB/octave, got {}",
                        x.slope_db_per_oct
                    ),
                );
            }
        }
        if p.speakers.len() != p.topology.speaker_count() {
            self.refuse(
                f,
                "speaker",
                None,
                format!(
                    "topology {} needs {} speaker channels, the profile has {}",
                    p.topology.label(),
                    p.topology.speaker_count(),
                    p.speakers.len()
                ),
            );
        }
        let mut used: BTreeMap<u32, String> = BTreeMap::new();
        let mut claim = |me: &mut Self, ch: u32, field: String| {
            if !(1..=8).contains(&ch) {
                me.refuse(
                    f,
                    field,
                    Some(ch),
                    "channel out of range: outputs are 1..=8".into(),
                );
            } else if let Some(prev) = used.get(&ch) {
                me.refuse(
                    f,
                    field,
                    Some(ch),
                    format!("duplicate channel: already used by {prev}"),
                );
            } else {
                used.insert(ch, field);
            }
        };
        for (i, s) in p.speakers.iter().enumerate() {
            let field = format!("speaker[{}]", i + 1);
            claim(self, s.channel, format!("{field}.channel"));
            let ch = Some(s.channel);
            if s.band < 1 || s.band as usize > bands {
                self.refuse(
                    f,
                    format!("{field}.band"),
                    ch,
                    format!("band must be 1..={bands} for {}", p.topology.label()),
                );
            }
            if s.role == Role::Sum && s.band != 1 {
                self.refuse(
                    f,
                    format!("{field}.role"),
                    ch,
                    "only the lowest band (1) may take the L+R sum".into(),
                );
            }
            if !(-60.0..=0.0).contains(&s.trim_db) {
                self.refuse(
                    f,
                    format!("{field}.trim_db"),
                    ch,
                    format!("bad units: trim is a cut in dB, -60..=0, got {}", s.trim_db),
                );
            }
            if !(0.0..=100.0).contains(&s.delay_ms) {
                self.refuse(
                    f,
                    format!("{field}.delay_ms"),
                    ch,
                    format!(
                        "bad units: delay is in milliseconds, 0..=100, got {}",
                        s.delay_ms
                    ),
                );
            }
        }
        for b in 1..=bands as u32 {
            let has = |r: Role| p.speakers.iter().any(|s| s.band == b && s.role == r);
            let ok = (has(Role::Left) && has(Role::Right) && !has(Role::Sum))
                || (has(Role::Sum) && !has(Role::Left) && !has(Role::Right));
            if !ok {
                self.refuse(
                    f,
                    "speaker",
                    None,
                    format!("band {b} needs a left and a right speaker, or L+R sum speakers only"),
                );
            }
        }
        if p.topology == Topology::ThreeWayMonoSub
            && !p.speakers.iter().any(|s| s.role == Role::Sum)
        {
            self.refuse(
                f,
                "speaker",
                None,
                "3-way-mono-sub needs a sub with role = \"sum\"".into(),
            );
        }
        let m = &p.monitors;
        if !(m.headphones.is_empty() || m.headphones.len() == 2) {
            self.refuse(
                f,
                "monitors.headphones",
                None,
                format!("0 or 2 channels, got {}", m.headphones.len()),
            );
        }
        if m.in_ears.len() > 2 {
            self.refuse(
                f,
                "monitors.in_ears",
                None,
                format!("0, 1 or 2 channels, got {}", m.in_ears.len()),
            );
        }
        for (i, &c) in m.headphones.iter().enumerate() {
            claim(self, c, format!("monitors.headphones[{}]", i + 1));
        }
        for (i, &c) in m.in_ears.iter().enumerate() {
            claim(self, c, format!("monitors.in_ears[{}]", i + 1));
        }
        let t = &p.target;
        if let Some(spl) = t.operating_spl_db {
            if !(40.0..=120.0).contains(&spl) {
                self.refuse(
                    f,
                    "target.operating_spl_db",
                    None,
                    format!("bad units: expected dB SPL in 40..=120, got {spl}"),
                );
            }
        }
        if !(20.0..=100.0).contains(&t.reference_phon) {
            self.refuse(
                f,
                "target.reference_phon",
                None,
                format!(
                    "bad units: expected phon in 20..=100, got {}",
                    t.reference_phon
                ),
            );
        }
        for (i, [hz, db]) in t.points.iter().enumerate() {
            if !(10.0..=nyquist).contains(hz) || !(-30.0..=30.0).contains(db) {
                self.refuse(
                    f,
                    format!("target.points[{}]", i + 1),
                    None,
                    format!("bad units: expected [Hz in 10..={nyquist}, dB in -30..=30], got [{hz}, {db}]"),
                );
            }
        }
    }
}
