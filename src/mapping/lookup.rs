//! Finding a field by path in a record, without building a tree of the whole record.
//!
//! A Kafka payload is looked at through [`serde_json::value::RawValue`]: each object on a
//! path is split into its keys and raw values once, and only the values a mapping asks for are
//! decoded. That keeps a mapped decode close to the native one's cost. Rows from CSV and
//! Parquet arrive as [`serde_json::Value`] and are walked directly.

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::spec::FieldPath;

/// A scalar found at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    Text(Cow<'a, str>),
    /// A JSON number, as written.
    Number(Cow<'a, str>),
    Bool(bool),
    Null,
    /// An object or array where a scalar was expected.
    Compound,
}

impl Leaf<'_> {
    /// Text for an id: a string, or a number as written (numeric user ids are common).
    /// `None` for null, empty text, booleans and compounds.
    pub fn as_id(&self) -> Option<&str> {
        match self {
            Leaf::Text(t) if !t.trim().is_empty() => Some(t),
            Leaf::Number(n) => Some(n),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Leaf::Text(_) => "a string",
            Leaf::Number(_) => "a number",
            Leaf::Bool(_) => "a boolean",
            Leaf::Null => "null",
            Leaf::Compound => "an object or array",
        }
    }
}

/// An object's members with their raw values, in input order (a repeated key: the last wins).
pub struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    /// Splits a JSON object; `Err` with serde's message if `text` is not one.
    pub fn parse(text: &'a str) -> Result<RawObject<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let object = de.deserialize_map(ObjectVisitor)?;
        de.end()?;
        Ok(object)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The scalar at `path`, `None` if any key on the way is absent or not an object.
    pub fn find(&self, path: &FieldPath) -> Option<Leaf<'a>> {
        let (last, parents) = path.0.split_last()?;
        let mut nested: Option<RawObject<'a>> = None;
        for key in parents {
            let object = nested.as_ref().unwrap_or(self);
            let next = object.get(key)?;
            nested = Some(RawObject::parse(next.get()).ok()?);
        }
        nested.as_ref().unwrap_or(self).get(last).map(raw_leaf)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            members.push((key.0, value));
        }
        Ok(RawObject(members))
    }
}

/// A key borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

fn raw_leaf(raw: &RawValue) -> Leaf<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<Key<'_>>(text) {
            Ok(Key(s)) => Leaf::Text(s),
            Err(_) => Leaf::Compound, // cannot happen for a RawValue serde has checked
        },
        Some(b'{') | Some(b'[') => Leaf::Compound,
        Some(b't') => Leaf::Bool(true),
        Some(b'f') => Leaf::Bool(false),
        Some(b'n') => Leaf::Null,
        _ => Leaf::Number(Cow::Borrowed(text)),
    }
}

/// The scalar at `path` in a JSON value.
pub fn find_in_value<'a>(value: &'a serde_json::Value, path: &FieldPath) -> Option<Leaf<'a>> {
    let mut node = value;
    for key in &path.0 {
        node = node.as_object()?.get(key)?;
    }
    Some(match node {
        serde_json::Value::String(s) => Leaf::Text(Cow::Borrowed(s)),
        serde_json::Value::Number(n) => Leaf::Number(Cow::Owned(n.to_string())),
        serde_json::Value::Bool(b) => Leaf::Bool(*b),
        serde_json::Value::Null => Leaf::Null,
        _ => Leaf::Compound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).unwrap()
    }

    #[test]
    fn finds_nested_scalars_and_borrows_plain_strings() {
        let text = r#"{"a":{"b":{"c":"x"}},"n":12.50,"e":"q\"uote","t":true,"z":null,"o":[1]}"#;
        let o = RawObject::parse(text).unwrap();
        assert_eq!(o.find(&path("a.b.c")), Some(Leaf::Text(Cow::Borrowed("x"))));
        assert_eq!(o.find(&path("n")), Some(Leaf::Number("12.50".into())));
        assert_eq!(o.find(&path("e")), Some(Leaf::Text("q\"uote".into())));
        assert_eq!(o.find(&path("t")), Some(Leaf::Bool(true)));
        assert_eq!(o.find(&path("z")), Some(Leaf::Null));
        assert_eq!(o.find(&path("o")), Some(Leaf::Compound));
        assert_eq!(o.find(&path("a.b")), Some(Leaf::Compound));
        assert_eq!(o.find(&path("a.x")), None);
        assert_eq!(o.find(&path("n.x")), None, "a scalar has no members");
        assert_eq!(o.find(&path("/a/b/c")), Some(Leaf::Text("x".into())));
    }

    #[test]
    fn the_last_of_repeated_keys_wins_as_in_serde_json() {
        let o = RawObject::parse(r#"{"k":"first","k":"last"}"#).unwrap();
        assert_eq!(o.find(&path("k")), Some(Leaf::Text("last".into())));
        let v: serde_json::Value = serde_json::from_str(r#"{"k":"first","k":"last"}"#).unwrap();
        assert_eq!(
            find_in_value(&v, &path("k")),
            Some(Leaf::Text("last".into()))
        );
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for bad in ["[1]", "\"s\"", "{", "{}x", "", "{\"a\":}"] {
            assert!(RawObject::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pointer_paths_reach_keys_with_dots_and_slashes() {
        let o = RawObject::parse(r#"{"a.b":{"c/d":1}}"#).unwrap();
        assert_eq!(o.find(&path("/a.b/c~1d")), Some(Leaf::Number("1".into())));
    }
}
