//! Where a recipe field is written, for the errors of value checks: [`locate`]
//! finds the line of a field's key (`training.lr`: the key `lr` in the mapping
//! `training`) with serde_yaml's own parser, so block style and flow style
//! (`training: {lr: 0.1}`) are read alike; [`Place`] is what such an error says:
//! that line, or that a command-line flag or the default gave the value.
use super::moved;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A 1-based line and column in a recipe's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// Where the value a check refused came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The field's key in the recipe text.
    At(Loc),
    /// A command-line flag (the file gives another value, or none).
    Flag,
    /// Neither the file nor a flag: the default.
    Default,
}

/// Written after the field's name: ` at line 3 column 1`, ` (from a command-line flag)`.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Place::At(l) => write!(f, " at line {} column {}", l.line, l.column),
            Place::Flag => f.write_str(" (from a command-line flag)"),
            Place::Default => f.write_str(" (not in the recipe)"),
        }
    }
}

/// The location of `field` in recipe `text`: `field` is a section path
/// (`search.beta`), whose last part may list alternatives (`training.mean/std/scale`:
/// the first of them the text gives); a field of the prune budget is also found
/// under its spelling before 2026-12-07 ([`moved::old_budget_fields`]). None when the
/// text does not give the field.
pub fn locate(text: &str, field: &str) -> Option<Loc> {
    let (section, names) = split(field);
    let old = moved::old_budget_fields(field);
    find_key(text, &section, &|k| names.contains(&k))
        .or_else(|| find_key(text, &[], &|k| old.contains(&k)))
        .map(|(_, loc)| loc)
}

/// Whether `field` (a section path, as [`locate`] reads it) has other values in
/// two recipes: the recipe as read and with the command-line flags.
pub fn changed<R: serde::Serialize>(read: &R, merged: &R, field: &str) -> bool {
    let (section, names) = split(field);
    let values = |r: &R| -> Vec<Option<serde_yaml::Value>> {
        let v = serde_yaml::to_value(r).ok();
        let path = |n: &&str| section.iter().chain([n]).try_fold(v.as_ref()?, |v, k| v.get(k));
        names.iter().map(|n| path(n).cloned()).collect()
    };
    values(read) != values(merged)
}

/// A field path's sections and the names its last part lists (`a.b/c`: `[a]`, `[b, c]`).
pub fn split(field: &str) -> (Vec<&str>, Vec<&str>) {
    let mut parts: Vec<&str> = field.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    (parts, last.split('/').collect())
}

/// The first key of the mapping at `section` (a path of keys from the top level)
/// in `text` that `wanted` accepts, with the key's location; None when there is
/// none, or the text has no such mapping or is no YAML.
pub fn find_key(
    text: &str,
    section: &[&str],
    wanted: &dyn Fn(&str) -> bool,
) -> Option<(String, Loc)> {
    let hit = Cell::new(None);
    let walk = Walk { section, wanted, hit: &hit };
    // The walk stops at the wanted key with an error, which serde_yaml places at the key.
    let err = walk.deserialize(serde_yaml::Deserializer::from_str(text)).err()?;
    let (key, at) = (hit.take()?, err.location()?);
    Some((key, Loc { line: at.line(), column: at.column() }))
}

/// Walks the mappings along `section`, values skipped; `hit` is set by the wanted
/// key of the last one, which also ends the walk with an error at the key.
#[derive(Clone, Copy)]
struct Walk<'a> {
    section: &'a [&'a str],
    wanted: &'a dyn Fn(&str) -> bool,
    hit: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(is_section) = map.next_key_seed(Key(self))? {
            if is_section {
                return map.next_value_seed(Walk { section: &self.section[1..], ..self });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// One key: whether it is the next section of the path; an error (at the key)
/// when it is the wanted key of the last mapping.
struct Key<'a>(Walk<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let w = self.0;
        match w.section.first() {
            Some(s) => Ok(v == *s),
            None if (w.wanted)(v) => {
                w.hit.set(Some(v.to_string()));
                Err(E::custom("the wanted key"))
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, field: &str) -> Option<usize> {
        locate(text, field).map(|l| l.line)
    }

    #[test]
    fn block_and_flow_keys_are_found_at_their_line() {
        let block = "model: m\n# a comment\ntraining:\n  epochs: 3\n  lr: 0.1\nsearch:\n  lr: 9\n";
        assert_eq!(locate(block, "training.lr"), Some(Loc { line: 5, column: 3 }));
        assert_eq!((line(block, "search.lr"), line(block, "model")), (Some(7), Some(1)));
        assert_eq!((line(block, "training.seed"), line(block, "agent.lr")), (None, None));
        let flow =
            "model: m\ntraining: {epochs: 3,\n  lr: 0.1}\nbudget: {metric: macs, ratio: 2}\n";
        assert_eq!((line(flow, "training.lr"), line(flow, "training.epochs")), (Some(3), Some(2)));
        assert_eq!(locate(flow, "budget.ratio"), Some(Loc { line: 4, column: 24 }));
        // Alternatives: the first the text gives; a section that is no mapping: none.
        assert_eq!(line(block, "training.mean/std/lr"), Some(5));
        assert_eq!(line("training: 3\n", "training.lr"), None);
    }

    #[test]
    fn the_old_budget_spelling_is_found_for_the_budget() {
        let old = "model: m\nmacs-ratio: 0.5\nlatency-batch: 4\n";
        assert_eq!((line(old, "budget.ratio"), line(old, "budget.batch")), (Some(2), Some(3)));
        assert_eq!(line(old, "budget"), Some(2));
        assert_eq!(line("budget:\n  metric: latency\n  ratio: 0.5\n", "budget.ratio"), Some(3));
    }

    #[test]
    fn changed_fields_are_told_from_the_others() {
        let read: serde_yaml::Value = serde_yaml::from_str("a: 1\ns:\n  b: 2\n  c: 3\n").unwrap();
        let mut merged = read.clone();
        merged["s"]["c"] = 4.into();
        assert!(changed(&read, &merged, "s.c") && changed(&read, &merged, "s.b/c"));
        assert!(!changed(&read, &merged, "s.b") && !changed(&read, &merged, "a"));
        assert!(!changed(&read, &merged, "s.none") && !changed(&read, &merged, "a.b"));
        merged["t"] = 1.into();
        assert!(changed(&read, &merged, "t"));
    }

    #[test]
    fn no_yaml_and_no_mapping_find_nothing() {
        for text in ["", "- 1\n- 2\n", "just text\n", "b: [\n", "1: x\n", "? [a]\n: 1\n"] {
            assert_eq!(line(text, "a"), None, "{text:?}");
        }
    }
}
