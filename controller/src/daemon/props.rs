//! Filter-graph controls as a `Props` param: what `pw-cli set-param <id> Props
//! '{ params = [ "ch1_gain:Mult" 0.0 ] }'` sends (a Struct of name/value pairs in
//! SPA_PROP_params), built with libspa's safe pod serializer.

use pipewire::spa;
use spa::pod::serialize::PodSerializer;
use spa::pod::{Object, Property, PropertyFlags, Value};

/// `ch<N>_gain:Mult`, the linear gain in front of channel N's delay (N one-based).
pub fn gain_control(channel: u32) -> String {
    format!("ch{channel}_gain:Mult")
}

/// A value of a custom `Props` key (the generator takes strings, numbers and booleans).
#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Float(f32),
    Bool(bool),
    Str(String),
}

/// The serialized Props object carrying `controls` (name, value) in SPA_PROP_params.
pub fn params_pod(controls: &[(String, f32)]) -> Vec<u8> {
    let values: Vec<(String, PropValue)> = controls
        .iter()
        .map(|(k, v)| (k.clone(), PropValue::Float(*v)))
        .collect();
    values_pod(&values)
}

/// The serialized Props object carrying typed `(name, value)` pairs in SPA_PROP_params.
pub fn values_pod(params: &[(String, PropValue)]) -> Vec<u8> {
    let fields = params
        .iter()
        .flat_map(|(k, v)| {
            let v = match v {
                PropValue::Float(f) => Value::Float(*f),
                PropValue::Bool(b) => Value::Bool(*b),
                PropValue::Str(s) => Value::String(s.clone()),
            };
            [Value::String(k.clone()), v]
        })
        .collect();
    let obj = Value::Object(Object {
        type_: spa::sys::SPA_TYPE_OBJECT_Props,
        id: spa::sys::SPA_PARAM_Props,
        properties: vec![Property {
            key: spa::sys::SPA_PROP_params,
            flags: PropertyFlags::empty(),
            value: Value::Struct(fields),
        }],
    });
    PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &obj)
        .expect("a Props pod of strings and floats always serializes")
        .0
        .into_inner()
}

/// The numeric controls (name, value) in a serialized Props object's SPA_PROP_params, as a
/// filter-chain node reports them (`ch1_gain:Mult` = 0.5, ...); empty when it has none.
pub fn parse_controls(bytes: &[u8]) -> Vec<(String, f32)> {
    let Ok((_, Value::Object(o))) =
        spa::pod::deserialize::PodDeserializer::deserialize_any_from(bytes)
    else {
        return Vec::new();
    };
    let Some(Value::Struct(items)) = o
        .properties
        .iter()
        .find(|p| p.key == spa::sys::SPA_PROP_params)
        .map(|p| &p.value)
    else {
        return Vec::new();
    };
    items
        .chunks_exact(2)
        .filter_map(|kv| {
            let Value::String(k) = &kv[0] else {
                return None;
            };
            let v = match &kv[1] {
                Value::Float(f) => *f,
                Value::Double(d) => *d as f32,
                Value::Int(i) => *i as f32,
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spa::pod::deserialize::PodDeserializer;

    #[test]
    fn controls_read_back_from_a_props_pod() {
        let bytes = params_pod(&[(gain_control(1), 0.5), (gain_control(2), 0.125)]);
        assert_eq!(
            parse_controls(&bytes),
            vec![(gain_control(1), 0.5), (gain_control(2), 0.125)]
        );
        assert!(parse_controls(&[0u8; 8]).is_empty());
    }

    #[test]
    fn params_pod_round_trips_as_name_value_pairs() {
        let bytes = params_pod(&[(gain_control(1), 0.0), (gain_control(3), 0.25)]);
        let (_, v) = PodDeserializer::deserialize_any_from(&bytes).expect("valid pod");
        let Value::Object(o) = v else {
            panic!("not an object: {v:?}")
        };
        assert_eq!(o.type_, spa::sys::SPA_TYPE_OBJECT_Props);
        assert_eq!(o.id, spa::sys::SPA_PARAM_Props);
        assert_eq!(o.properties.len(), 1);
        assert_eq!(o.properties[0].key, spa::sys::SPA_PROP_params);
        assert_eq!(
            o.properties[0].value,
            Value::Struct(vec![
                Value::String("ch1_gain:Mult".into()),
                Value::Float(0.0),
                Value::String("ch3_gain:Mult".into()),
                Value::Float(0.25),
            ])
        );
    }
}
