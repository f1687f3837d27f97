//! Building and reading the pods of `PropInfo`, `Props`, `EnumFormat`, `Format`, `Buffers` and
//! `IO` params. Main thread only: everything here allocates.
//!
//! mugge's own settings and readings travel as custom keys in `SPA_PROP_params` (a struct of
//! key/value pairs), never in standard keys such as the volume, which the adapter's converter
//! would apply to the signal.

use libspa::pod::{ChoiceValue, Object, Property, PropertyFlags, Value, ValueArray};
use libspa::utils::{Choice, ChoiceEnum, ChoiceFlags, Id};
use libspa_sys as sys;

/// One custom parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Bool(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Str(String),
    Floats(Vec<f32>),
    Ints(Vec<i32>),
}

impl Param {
    fn to_value(&self) -> Value {
        match self {
            Param::Bool(b) => Value::Bool(*b),
            Param::Int(i) => Value::Int(*i),
            Param::Long(l) => Value::Long(*l),
            Param::Float(f) => Value::Float(*f),
            Param::Double(d) => Value::Double(*d),
            Param::Str(s) => Value::String(s.clone()),
            Param::Floats(v) => Value::ValueArray(ValueArray::Float(v.clone())),
            Param::Ints(v) => Value::ValueArray(ValueArray::Int(v.clone())),
        }
    }

    /// Numeric view used by setters: any number type is accepted for a number key.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Param::Int(i) => Some(*i as f64),
            Param::Long(l) => Some(*l as f64),
            Param::Float(f) => Some(*f as f64),
            Param::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Param::Bool(b) => Some(*b),
            Param::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Type and range shown in `PropInfo` for one custom key.
#[derive(Clone, Debug)]
pub enum ParamType {
    Bool(bool),
    Float { default: f32, min: f32, max: f32 },
    Int { default: i32, min: i32, max: i32 },
    Long(i64),
    Str(String),
    Floats,
    Ints,
}

/// Describes one custom key for `PropInfo`.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub key: &'static str,
    pub description: &'static str,
    pub kind: ParamType,
    pub read_only: bool,
}

fn prop(key: u32, value: Value) -> Property {
    Property {
        key,
        flags: PropertyFlags::empty(),
        value,
    }
}

/// One `PropInfo` object per custom key (the form filter-chain uses for its controls).
pub fn prop_info(p: &ParamInfo) -> Value {
    let ty = match &p.kind {
        ParamType::Bool(b) => Value::Bool(*b),
        ParamType::Float { default, min, max } => Value::Choice(ChoiceValue::Float(Choice(
            ChoiceFlags::empty(),
            ChoiceEnum::Range {
                default: *default,
                min: *min,
                max: *max,
            },
        ))),
        ParamType::Int { default, min, max } => Value::Choice(ChoiceValue::Int(Choice(
            ChoiceFlags::empty(),
            ChoiceEnum::Range {
                default: *default,
                min: *min,
                max: *max,
            },
        ))),
        ParamType::Long(l) => Value::Long(*l),
        ParamType::Str(s) => Value::String(s.clone()),
        ParamType::Floats => Value::ValueArray(ValueArray::Float(Vec::new())),
        ParamType::Ints => Value::ValueArray(ValueArray::Int(Vec::new())),
    };
    let desc = if p.read_only {
        format!("{} (read-only)", p.description)
    } else {
        p.description.to_string()
    };
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_PropInfo,
        id: sys::SPA_PARAM_PropInfo,
        properties: vec![
            prop(sys::SPA_PROP_INFO_name, Value::String(p.key.to_string())),
            prop(sys::SPA_PROP_INFO_description, Value::String(desc)),
            prop(sys::SPA_PROP_INFO_type, ty),
            prop(sys::SPA_PROP_INFO_params, Value::Bool(true)),
        ],
    })
}

/// The `Props` object carrying `pairs` in `SPA_PROP_params`.
pub fn props(pairs: &[(&str, Param)]) -> Value {
    let mut s = Vec::with_capacity(pairs.len() * 2);
    for (k, v) in pairs {
        s.push(Value::String((*k).to_string()));
        s.push(v.to_value());
    }
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_Props,
        id: sys::SPA_PARAM_Props,
        properties: vec![prop(sys::SPA_PROP_params, Value::Struct(s))],
    })
}

/// Why a `Props` pod yielded nothing for us.
#[derive(Debug, PartialEq)]
pub enum PropsError {
    NotProps,
}

/// The custom key/value pairs of a `Props` object. Values of types we never use come back as
/// `Err(type name)` so the caller can log and ignore them. Standard keys (meant for the
/// adapter's converter) are skipped.
#[allow(clippy::type_complexity)]
pub fn parse_props(v: &Value) -> Result<Vec<(String, Result<Param, String>)>, PropsError> {
    let Value::Object(o) = v else {
        return Err(PropsError::NotProps);
    };
    if o.type_ != sys::SPA_TYPE_OBJECT_Props {
        return Err(PropsError::NotProps);
    }
    let mut out = Vec::new();
    for p in &o.properties {
        if p.key != sys::SPA_PROP_params {
            continue;
        }
        let Value::Struct(items) = &p.value else {
            continue;
        };
        for pair in items.chunks(2) {
            let [Value::String(k), v] = pair else {
                continue;
            };
            let val = match v {
                Value::Bool(b) => Ok(Param::Bool(*b)),
                Value::Int(i) => Ok(Param::Int(*i)),
                Value::Long(l) => Ok(Param::Long(*l)),
                Value::Float(f) => Ok(Param::Float(*f)),
                Value::Double(d) => Ok(Param::Double(*d)),
                Value::String(s) => Ok(Param::Str(s.clone())),
                other => Err(format!("{other:?}").chars().take(40).collect()),
            };
            out.push((k.clone(), val));
        }
    }
    Ok(out)
}

/// The audio format one port offers: planar f32, fixed channel count and rate, AUX positions.
pub fn enum_format(channels: u32, rate: u32) -> Value {
    let positions = (0..channels)
        .map(|i| Id(sys::SPA_AUDIO_CHANNEL_AUX0 + i))
        .collect();
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_Format,
        id: sys::SPA_PARAM_EnumFormat,
        properties: vec![
            prop(
                sys::SPA_FORMAT_mediaType,
                Value::Id(Id(sys::SPA_MEDIA_TYPE_audio)),
            ),
            prop(
                sys::SPA_FORMAT_mediaSubtype,
                Value::Id(Id(sys::SPA_MEDIA_SUBTYPE_raw)),
            ),
            prop(
                sys::SPA_FORMAT_AUDIO_format,
                Value::Id(Id(sys::SPA_AUDIO_FORMAT_F32P)),
            ),
            prop(sys::SPA_FORMAT_AUDIO_rate, Value::Int(rate as i32)),
            prop(sys::SPA_FORMAT_AUDIO_channels, Value::Int(channels as i32)),
            prop(
                sys::SPA_FORMAT_AUDIO_position,
                Value::ValueArray(ValueArray::Id(positions)),
            ),
        ],
    })
}

/// The configured format (same shape as [`enum_format`], id `Format`).
pub fn format(channels: u32, rate: u32) -> Value {
    let Value::Object(mut o) = enum_format(channels, rate) else {
        unreachable!()
    };
    o.id = sys::SPA_PARAM_Format;
    Value::Object(o)
}

/// The format a DSP port offers: mono f32 (`audio/dsp`), as PipeWire's own DSP ports; no rate
/// or channel fields (a DSP port runs at the graph rate, one channel).
pub fn dsp_enum_format() -> Value {
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_Format,
        id: sys::SPA_PARAM_EnumFormat,
        properties: vec![
            prop(
                sys::SPA_FORMAT_mediaType,
                Value::Id(Id(sys::SPA_MEDIA_TYPE_audio)),
            ),
            prop(
                sys::SPA_FORMAT_mediaSubtype,
                Value::Id(Id(sys::SPA_MEDIA_SUBTYPE_dsp)),
            ),
            prop(
                sys::SPA_FORMAT_AUDIO_format,
                Value::Id(Id(sys::SPA_AUDIO_FORMAT_DSP_F32)),
            ),
        ],
    })
}

/// The configured DSP format (id `Format`).
pub fn dsp_format() -> Value {
    let Value::Object(mut o) = dsp_enum_format() else {
        unreachable!()
    };
    o.id = sys::SPA_PARAM_Format;
    Value::Object(o)
}

/// Checks a parsed format against a DSP port's offer.
pub fn check_dsp_format(f: &RawFormat) -> Result<(), String> {
    if f.media_type != sys::SPA_MEDIA_TYPE_audio || f.media_subtype != sys::SPA_MEDIA_SUBTYPE_dsp {
        return Err(format!(
            "media type {}/{} (want audio/dsp)",
            f.media_type, f.media_subtype
        ));
    }
    if f.format != sys::SPA_AUDIO_FORMAT_DSP_F32 {
        return Err(format!("sample format {} (want DSP f32)", f.format));
    }
    Ok(())
}

/// Checks a `Format` pod against what the port offers; returns the rate on success.
pub fn check_format(v: &Value, channels: u32) -> Result<u32, String> {
    let Value::Object(o) = v else {
        return Err("format is not an object".into());
    };
    let get = |k: u32| o.properties.iter().find(|p| p.key == k).map(|p| &p.value);
    match get(sys::SPA_FORMAT_mediaType) {
        Some(Value::Id(Id(t))) if *t == sys::SPA_MEDIA_TYPE_audio => {}
        other => return Err(format!("media type {other:?}")),
    }
    match get(sys::SPA_FORMAT_mediaSubtype) {
        Some(Value::Id(Id(t))) if *t == sys::SPA_MEDIA_SUBTYPE_raw => {}
        other => return Err(format!("media subtype {other:?}")),
    }
    match get(sys::SPA_FORMAT_AUDIO_format) {
        Some(Value::Id(Id(t))) if *t == sys::SPA_AUDIO_FORMAT_F32P => {}
        other => return Err(format!("sample format {other:?} (want F32P)")),
    }
    match get(sys::SPA_FORMAT_AUDIO_channels) {
        Some(Value::Int(c)) if *c as u32 == channels => {}
        other => return Err(format!("channels {other:?} (want {channels})")),
    }
    match get(sys::SPA_FORMAT_AUDIO_rate) {
        Some(Value::Int(r)) if *r > 0 => Ok(*r as u32),
        other => Err(format!("rate {other:?}")),
    }
}

/// The fields of a `Format` pod that matter here (parsed by SPA's own parser in the FFI module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawFormat {
    pub media_type: u32,
    pub media_subtype: u32,
    pub format: u32,
    pub rate: u32,
    pub channels: u32,
}

/// Checks a parsed format against what the port offers; returns the rate on success.
pub fn check_raw_format(f: &RawFormat, channels: u32) -> Result<u32, String> {
    if f.media_type != sys::SPA_MEDIA_TYPE_audio || f.media_subtype != sys::SPA_MEDIA_SUBTYPE_raw {
        return Err(format!(
            "media type {}/{} (want audio/raw)",
            f.media_type, f.media_subtype
        ));
    }
    if f.format != sys::SPA_AUDIO_FORMAT_F32P {
        return Err(format!("sample format {} (want F32P)", f.format));
    }
    if f.channels != channels {
        return Err(format!("channels {} (want {channels})", f.channels));
    }
    if f.rate == 0 {
        return Err("rate 0".into());
    }
    Ok(f.rate)
}

fn range(default: i32, min: i32, max: i32) -> Value {
    Value::Choice(ChoiceValue::Int(Choice(
        ChoiceFlags::empty(),
        ChoiceEnum::Range { default, min, max },
    )))
}

/// Largest quantum the plugin sizes its buffers and scratch space for.
pub const MAX_QUANTUM: u32 = 8192;
/// Most buffers a port takes.
pub const MAX_BUFFERS: u32 = 16;

/// `Buffers` param: one block per channel of f32 samples.
pub fn buffers(channels: u32) -> Value {
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_ParamBuffers,
        id: sys::SPA_PARAM_Buffers,
        properties: vec![
            prop(
                sys::SPA_PARAM_BUFFERS_buffers,
                range(2, 1, MAX_BUFFERS as i32),
            ),
            prop(sys::SPA_PARAM_BUFFERS_blocks, Value::Int(channels as i32)),
            prop(
                sys::SPA_PARAM_BUFFERS_size,
                range((MAX_QUANTUM * 4) as i32, 16 * 4, (MAX_QUANTUM * 4) as i32),
            ),
            prop(sys::SPA_PARAM_BUFFERS_stride, Value::Int(4)),
            prop(sys::SPA_PARAM_BUFFERS_align, Value::Int(16)),
        ],
    })
}

/// `IO` param for the port's buffer IO area.
pub fn io_buffers(size: usize) -> Value {
    Value::Object(Object {
        type_: sys::SPA_TYPE_OBJECT_ParamIO,
        id: sys::SPA_PARAM_IO,
        properties: vec![
            prop(sys::SPA_PARAM_IO_id, Value::Id(Id(sys::SPA_IO_Buffers))),
            prop(sys::SPA_PARAM_IO_size, Value::Int(size as i32)),
        ],
    })
}

/// Serializes a pod value to bytes.
pub fn to_bytes(v: &Value) -> Option<Vec<u8>> {
    libspa::pod::serialize::PodSerializer::serialize(std::io::Cursor::new(Vec::new()), v)
        .ok()
        .map(|(c, _)| c.into_inner())
}

/// Parses pod bytes. libspa's deserializer can panic on malformed input (integer overflow in
/// its length arithmetic, found by `fuzzed_pods_never_panic`): a bad pod from a client must
/// not take the daemon down, so the panic is caught here and reads as "unreadable".
pub fn from_bytes(b: &[u8]) -> Option<Value> {
    std::panic::catch_unwind(|| {
        libspa::pod::deserialize::PodDeserializer::deserialize_any_from(b)
            .ok()
            .map(|(_, v)| v)
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_round_trip_through_pod_bytes() {
        let v = props(&[
            ("a.level", Param::Float(-30.0)),
            ("a.name", Param::Str("x".into())),
        ]);
        let back = from_bytes(&to_bytes(&v).unwrap()).unwrap();
        let pairs = parse_props(&back).unwrap();
        assert_eq!(pairs[0], ("a.level".to_string(), Ok(Param::Float(-30.0))));
        assert_eq!(pairs[1], ("a.name".to_string(), Ok(Param::Str("x".into()))));
    }

    #[test]
    fn format_check_accepts_own_format_and_rejects_others() {
        assert_eq!(check_format(&format(3, 48000), 3), Ok(48000));
        assert!(check_format(&format(3, 48000), 2).is_err());
        assert!(check_format(&props(&[]), 2).is_err());
    }

    #[test]
    fn dsp_format_check_accepts_mono_f32_only() {
        let ok = RawFormat {
            media_type: sys::SPA_MEDIA_TYPE_audio,
            media_subtype: sys::SPA_MEDIA_SUBTYPE_dsp,
            format: sys::SPA_AUDIO_FORMAT_DSP_F32,
            ..RawFormat::default()
        };
        assert_eq!(check_dsp_format(&ok), Ok(()));
        let raw = RawFormat {
            media_subtype: sys::SPA_MEDIA_SUBTYPE_raw,
            ..ok
        };
        assert!(check_dsp_format(&raw).is_err());
        let s16 = RawFormat {
            format: sys::SPA_AUDIO_FORMAT_S16,
            ..ok
        };
        assert!(check_dsp_format(&s16).is_err());
    }

    /// Random bytes and random mutations of valid pods never panic the parsers.
    #[test]
    fn fuzzed_pods_never_panic_out_of_the_parsers() {
        let mut x = 0x1234_5678u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let seeds = [
            to_bytes(&props(&[
                ("k", Param::Float(1.0)),
                ("s", Param::Str("v".into())),
            ]))
            .unwrap(),
            to_bytes(&format(2, 48000)).unwrap(),
        ];
        for i in 0..20000 {
            let mut b = seeds[i % 2].clone();
            for _ in 0..(1 + rnd() % 8) {
                let n = b.len();
                let j = rnd() as usize % n;
                b[j] = rnd() as u8;
            }
            if i % 7 == 0 {
                let n = b.len();
                b.truncate(rnd() as usize % n);
            }
            if let Some(v) = from_bytes(&b) {
                let _ = parse_props(&v);
                let _ = check_format(&v, 2);
            }
        }
    }
}
