//! Meter readings from a `mugge.meter` node's `Props` param, and the clip-reset write.
//!
//! The meter publishes each snapshot as custom `Props` keys (`params` struct of key/value
//! pairs): `meter.seq`, `meter.position`, `meter.nsec` (graph clock), and per channel
//! `meter.peak`, `meter.rms`, `meter.display`, `meter.ppm-level` (dBFS) and `meter.clip`.

use pipewire::spa;
use serde::{Deserialize, Serialize};
use spa::pod::{Object, Pod, Property, Value, ValueArray};
use zbus::zvariant::Type;

/// `SPA_TYPE_OBJECT_Props`, `SPA_PARAM_Props`, `SPA_PROP_params` (spa/param/props.h).
const TYPE_OBJECT_PROPS: u32 = 0x40002;
const PARAM_PROPS: u32 = 2;
const PROP_PARAMS: u32 = 0x80001;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct Levels {
    pub seq: i64,
    /// Graph clock position and nsec of the snapshot.
    pub position: i64,
    pub nsec: i64,
    pub peak: Vec<f64>,
    pub rms: Vec<f64>,
    pub display: Vec<f64>,
    pub ppm: Vec<f64>,
    pub clip: Vec<bool>,
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::ValueArray(ValueArray::Float(x)) => Some(x.iter().map(|f| *f as f64).collect()),
        Value::ValueArray(ValueArray::Double(x)) => Some(x.clone()),
        Value::ValueArray(ValueArray::Int(x)) => Some(x.iter().map(|i| *i as f64).collect()),
        Value::ValueArray(ValueArray::Long(x)) => Some(x.iter().map(|i| *i as f64).collect()),
        Value::ValueArray(ValueArray::Bool(x)) => Some(x.iter().map(|b| *b as u8 as f64).collect()),
        Value::Struct(items) => items.iter().map(number).collect(),
        v => number(v).map(|x| vec![x]),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f as f64),
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        Value::Long(l) => Some(*l as f64),
        Value::Bool(b) => Some(*b as u8 as f64),
        _ => None,
    }
}

/// Levels from a deserialized `Props` object; `None` when it holds no meter snapshot.
pub fn parse(value: &Value) -> Option<Levels> {
    let Value::Object(obj) = value else {
        return None;
    };
    let params = obj.properties.iter().find(|p| p.key == PROP_PARAMS)?;
    let Value::Struct(items) = &params.value else {
        return None;
    };
    let mut l = Levels::default();
    let mut seen = false;
    for pair in items.chunks_exact(2) {
        let Value::String(key) = &pair[0] else {
            continue;
        };
        let v = &pair[1];
        match key.as_str() {
            "meter.seq" => l.seq = number(v)? as i64,
            "meter.position" => l.position = number(v)? as i64,
            "meter.nsec" => l.nsec = number(v)? as i64,
            "meter.peak" => l.peak = numbers(v)?,
            "meter.rms" => l.rms = numbers(v)?,
            "meter.display" => l.display = numbers(v)?,
            "meter.ppm-level" => l.ppm = numbers(v)?,
            "meter.clip" => l.clip = numbers(v)?.iter().map(|c| *c != 0.0).collect(),
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(l)
}

pub fn parse_pod(pod: &Pod) -> Option<Levels> {
    let (_, value) =
        spa::pod::deserialize::PodDeserializer::deserialize_any_from(pod.as_bytes()).ok()?;
    parse(&value)
}

/// The `Props` pod that resets every channel's clip latch.
pub fn reset_clip_pod() -> Vec<u8> {
    let value = Value::Object(Object {
        type_: TYPE_OBJECT_PROPS,
        id: PARAM_PROPS,
        properties: vec![Property::new(
            PROP_PARAMS,
            Value::Struct(vec![
                Value::String("meter.reset-clip".into()),
                Value::Bool(true),
            ]),
        )],
    });
    spa::pod::serialize::PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &value)
        .map(|(c, _)| c.into_inner())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props_pod(items: Vec<Value>) -> Vec<u8> {
        let value = Value::Object(Object {
            type_: TYPE_OBJECT_PROPS,
            id: PARAM_PROPS,
            properties: vec![Property::new(PROP_PARAMS, Value::Struct(items))],
        });
        spa::pod::serialize::PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &value)
            .unwrap()
            .0
            .into_inner()
    }

    #[test]
    fn a_meter_snapshot_parses_through_a_real_pod() {
        let s = |k: &str| Value::String(k.into());
        let bytes = props_pod(vec![
            s("meter.reset-clip"),
            Value::Bool(false),
            s("meter.seq"),
            Value::Long(42),
            s("meter.position"),
            Value::Long(48_000),
            s("meter.nsec"),
            Value::Long(1_000_000_000),
            s("meter.peak"),
            Value::ValueArray(ValueArray::Float(vec![-6.0, -120.0])),
            s("meter.rms"),
            Value::ValueArray(ValueArray::Float(vec![-9.0, -120.0])),
            s("meter.display"),
            Value::ValueArray(ValueArray::Float(vec![-6.0, -120.0])),
            s("meter.ppm-level"),
            Value::ValueArray(ValueArray::Float(vec![-7.5, -120.0])),
            s("meter.clip"),
            Value::ValueArray(ValueArray::Int(vec![1, 0])),
        ]);
        let pod = Pod::from_bytes(&bytes).unwrap();
        let l = parse_pod(pod).unwrap();
        assert_eq!(l.seq, 42);
        assert_eq!(l.position, 48_000);
        assert_eq!(l.nsec, 1_000_000_000);
        assert_eq!(l.peak, vec![-6.0, -120.0]);
        assert_eq!(l.rms[0], -9.0);
        assert_eq!(l.ppm[0], -7.5);
        assert_eq!(l.clip, vec![true, false]);
    }

    #[test]
    fn props_without_meter_keys_are_not_levels() {
        let bytes = props_pod(vec![
            Value::String("ch1_gain:Mult".into()),
            Value::Float(1.0),
        ]);
        assert_eq!(parse_pod(Pod::from_bytes(&bytes).unwrap()), None);
    }

    #[test]
    fn the_reset_pod_round_trips() {
        let bytes = reset_clip_pod();
        let (_, v) = spa::pod::deserialize::PodDeserializer::deserialize_any_from(&bytes).unwrap();
        let Value::Object(o) = v else {
            panic!("not an object")
        };
        assert_eq!((o.type_, o.id), (TYPE_OBJECT_PROPS, PARAM_PROPS));
        assert_eq!(
            o.properties[0].value,
            Value::Struct(vec![
                Value::String("meter.reset-clip".into()),
                Value::Bool(true)
            ])
        );
    }
}
