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

#[cfg(test)]
mod tests {
    use super::*;
    use spa::pod::deserialize::PodDeserializer;

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
