//! The fields of one agent object, split as `parse_line` needs them: the known ones in
//! fixed slots, everything else in `extra`, and the dropped `prompt` never kept.
//!
//! Deserializing straight into this (rather than into a `serde_json::Map` and then
//! removing the known keys) saves a key allocation and a map insert and remove per known
//! field, and never copies the prompt: about half the parse cost of a typical event.
//! Duplicate keys keep the last value, as a map does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::parse::DROPPED_FIELD;
use super::KNOWN_FIELDS;

pub(crate) struct Fields {
    known: [Option<Value>; KNOWN_FIELDS.len()],
    pub(crate) extra: Map<String, Value>,
}

impl Fields {
    fn empty() -> Fields {
        Fields {
            known: Default::default(),
            extra: Map::new(),
        }
    }

    fn slot(key: &str) -> Option<usize> {
        KNOWN_FIELDS.iter().position(|k| *k == key)
    }

    /// True for a key the event itself interprets or drops: never a pass-through field.
    pub(crate) fn is_own(key: &str) -> bool {
        key == DROPPED_FIELD || Fields::slot(key).is_some()
    }

    /// Splits an already parsed object.
    pub(crate) fn from_map(map: Map<String, Value>) -> Fields {
        let mut fields = Fields::empty();
        for (key, value) in map {
            fields.put(Cow::Owned(key), value);
        }
        fields
    }

    fn put(&mut self, key: Cow<'_, str>, value: Value) {
        if key == DROPPED_FIELD {
            return;
        }
        match Fields::slot(&key) {
            Some(i) => self.known[i] = Some(value),
            None => {
                self.extra.insert(key.into_owned(), value);
            }
        }
    }

    /// Takes a known field's value out.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        Fields::slot(key).and_then(|i| self.known[i].take())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::empty();
        while let Some(key) = access.next_key_seed(CowStr)? {
            if key == DROPPED_FIELD {
                access.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Value = access.next_value()?;
            fields.put(key, value);
        }
        Ok(fields)
    }
}

/// A string (a key, or a value that must be a string), borrowed from the input when it
/// holds no escapes; any other JSON type is an error.
pub(crate) struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
