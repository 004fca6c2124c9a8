//! Reading the configuration: JSON into plain values, and objects whose
//! members are taken by name with the type each must have. Every error
//! names the field; members nobody took are refused ([`Fields::finish`]),
//! so a misspelt option never goes unnoticed.

use grant::json::{self, Chars, Cursor, Token};

use super::ConfigError;

/// A parsed JSON value; strings decoded. Only used while loading.
#[derive(Debug)]
pub(super) enum Value {
    Str(String),
    Num(u64),
    OtherNum,
    Bool(bool),
    Null,
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

impl Value {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Num(_) | Value::OtherNum => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }
}

fn decode(raw: &[u8]) -> String {
    Chars::new(raw).collect()
}

pub(super) fn read_value(c: &mut Cursor<'_>) -> Option<Value> {
    Some(match c.token()? {
        Token::Str(raw) => Value::Str(decode(raw)),
        Token::Num(raw) => json::parse_time_integer(raw).map_or(Value::OtherNum, Value::Num),
        Token::Bool(b) => Value::Bool(b),
        Token::Null => Value::Null,
        Token::Array => {
            let mut items = Vec::new();
            while c.next_element() {
                items.push(read_value(c)?);
            }
            Value::Arr(items)
        }
        Token::Object => {
            let mut members = Vec::new();
            while let Some(key) = c.next_key() {
                members.push((decode(key), read_value(c)?));
            }
            Value::Obj(members)
        }
    })
}

/// An object being read: takes members by name and reports, at the end,
/// any member nobody asked for.
pub(super) struct Fields {
    path: String,
    pub(super) members: Vec<(String, Value)>,
}

impl Fields {
    pub(super) fn new(path: &str, value: Value) -> Result<Fields, ConfigError> {
        match value {
            Value::Obj(members) => Ok(Fields {
                path: path.to_owned(),
                members,
            }),
            other => Err(ConfigError::new(
                root_name(path),
                format!("must be an object, not {}", other.kind()),
            )),
        }
    }

    pub(super) fn name(&self, key: &str) -> String {
        // An empty or odd member name is quoted so the error still names it.
        let key = if key.is_empty() || key.chars().any(|c| c.is_control() || c == '`') {
            format!("{key:?}")
        } else {
            key.to_owned()
        };
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.swap_remove(at).1).filter(|v| !matches!(v, Value::Null))
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be a string, not {}", other.kind()),
            )),
        }
    }

    pub(super) fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| ConfigError::new(self.name(key), "is required"))
    }

    pub(super) fn integer(&mut self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Num(n)) => Ok(n),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be a whole number of seconds, not {}", other.kind()),
            )),
        }
    }

    pub(super) fn boolean(&mut self, key: &str) -> Result<bool, ConfigError> {
        match self.take(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be true or false, not {}", other.kind()),
            )),
        }
    }

    pub(super) fn array(&mut self, key: &str) -> Result<Vec<Value>, ConfigError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Arr(items)) => Ok(items),
            Some(other) => Err(ConfigError::new(
                self.name(key),
                format!("must be an array, not {}", other.kind()),
            )),
        }
    }

    pub(super) fn object(&mut self, key: &str) -> Result<Option<Fields>, ConfigError> {
        let name = self.name(key);
        self.take(key).map(|v| Fields::new(&name, v)).transpose()
    }

    /// Refuses members that were not read: a misspelt option must not be
    /// silently ignored.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        match self.members.first() {
            Some((key, _)) => Err(ConfigError::new(self.name(key), "is not a known option")),
            None => Ok(()),
        }
    }
}

fn root_name(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

pub(super) fn choice<T: Copy>(
    field: &str,
    value: Option<String>,
    options: &[(&str, T)],
) -> Result<Option<T>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, t)| Some(*t))
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ConfigError::new(field, format!("{value:?} is not one of {}", names.join(", ")))
        })
}
