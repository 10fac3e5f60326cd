//! A strict parser of the Prometheus text exposition format 0.0.4, for
//! checking what `/metrics` serves.

use std::collections::{BTreeMap, HashSet};

/// Why an exposition was refused; the message names the line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// One metric family: its `# TYPE`, `# HELP` and samples.
#[derive(Debug)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// Label pairs in the order written.
pub type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Go's float forms as Prometheus writes them.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Unescapes a HELP text (`\\`, `\n`) or a label value (also `\"`).
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?} in {s:?}")),
        }
    }
    Ok(out)
}

/// `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once('=').ok_or("label without =")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        let after = after.strip_prefix('"').ok_or("label value not quoted")?;
        // The closing quote is the first one not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                '\n' => return Err("newline in a label value".into()),
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.push((name.to_owned(), unescape(&after[..end], true)?));
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// Parses a whole exposition strictly, families by name.
pub fn parse_exposition(text: &str) -> Result<BTreeMap<String, Family>, ParseError> {
    parse(text).map_err(ParseError)
}

fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    // Families must be contiguous: once another starts, a finished one is closed.
    let mut current: Option<String> = None;
    let mut closed = HashSet::new();
    let mut series = HashSet::new();
    let mut enter = |name: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(name) {
            if closed.contains(name) {
                return Err(format!("{name} appears in two separate groups"));
            }
            if let Some(prev) = current.replace(name.to_owned()) {
                closed.insert(prev);
            }
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            match keyword {
                Some("HELP") | Some("TYPE") => {}
                _ => continue, // a plain comment
            }
            let name = name.ok_or_else(|| err("no metric name".into()))?;
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            enter(name, &mut current).map_err(err)?;
            if keyword == Some("HELP") {
                let help = unescape(rest.unwrap_or(""), false).map_err(err)?;
                let family = families.get_mut(name);
                match family {
                    Some(f) if f.help.is_some() => return Err(err("second HELP".into())),
                    Some(f) => f.help = Some(help),
                    None => {
                        families.insert(
                            name.to_owned(),
                            Family {
                                kind: String::new(),
                                help: Some(help),
                                samples: Vec::new(),
                            },
                        );
                    }
                }
            } else {
                let kind = rest.unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(err(format!("unknown type {kind:?}")));
                }
                let family = families.entry(name.to_owned()).or_insert(Family {
                    kind: String::new(),
                    help: None,
                    samples: Vec::new(),
                });
                if !family.kind.is_empty() {
                    return Err(err("second TYPE".into()));
                }
                if !family.samples.is_empty() {
                    return Err(err("TYPE after samples".into()));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(err("a counter's name must end in _total".into()));
                }
                family.kind = kind.to_owned();
            }
            continue;
        }

        // A sample: name{labels} value [timestamp]
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest.split(' ').filter(|f| !f.is_empty());
        let value = fields.next().ok_or_else(|| err("no value".into()))?;
        let value = parse_value(value).ok_or_else(|| err(format!("bad value {value:?}")))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        // The family: the name itself, or a histogram/summary's suffixed series.
        let family_name = [
            name,
            name.strip_suffix("_bucket").unwrap_or(name),
            name.strip_suffix("_sum").unwrap_or(name),
            name.strip_suffix("_count").unwrap_or(name),
        ]
        .into_iter()
        .find(|f| families.get(*f).is_some_and(|fam| !fam.kind.is_empty()))
        .ok_or_else(|| err(format!("{name} has no TYPE line before it")))?
        .to_owned();
        let family = families
            .get_mut(&family_name)
            .ok_or_else(|| err(format!("{family_name} vanished")))?;
        let suffix_ok = match family.kind.as_str() {
            "histogram" => name != family_name,
            "summary" => !name.ends_with("_bucket"),
            _ => name == family_name,
        };
        if !suffix_ok {
            return Err(err(format!("{name} does not belong to a {}", family.kind)));
        }
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(err("a counter must be ≥ 0".into()));
        }
        enter(&family_name, &mut current).map_err(err)?;
        let mut key: Vec<_> = labels.clone();
        key.sort();
        if !series.insert((name.to_owned(), key)) {
            return Err(err("duplicate series".into()));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, family) in &families {
        if family.kind.is_empty() {
            return Err(format!("{name} has HELP but no TYPE"));
        }
        if family.samples.is_empty() {
            return Err(format!("{name} has no samples"));
        }
        debug_assert!(
            family
                .samples
                .iter()
                .all(|s| s.name.starts_with(name.as_str()))
        );
    }
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_parser_is_strict() {
        let ok = "# HELP a_total A counter.\n# TYPE a_total counter\na_total 3\n\
              # TYPE b gauge\nb{x=\"q\\\"uote\",y=\"2\"} -1.5e3\nb{x=\"z\"} NaN 1700000000000\n";
        let f = parse_exposition(ok).unwrap();
        assert_eq!(f["b"].samples[0].labels[0].1, "q\"uote");
        assert_eq!(f["a_total"].help.as_deref(), Some("A counter."));
        for (bad, why) in [
            ("a 1\n", "no TYPE"),
            ("# TYPE a gauge\na 1", "no final newline"),
            ("# TYPE a counter\na 1\n", "counter without _total"),
            ("# TYPE a_total counter\na_total -1\n", "negative counter"),
            ("# TYPE 1a gauge\n1a 1\n", "bad name"),
            ("# TYPE a gauge\na one\n", "bad value"),
            ("# TYPE a gauge\na inf\n", "Rust's float spelling"),
            (
                "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
                "duplicate series",
            ),
            ("# TYPE a gauge\na{x=1} 1\n", "unquoted label"),
            ("# TYPE a gauge\na{__x=\"1\"} 1\n", "reserved label"),
            ("# TYPE a gauge\na{x=\"\\t\"} 1\n", "bad escape"),
            ("# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n", "family split"),
            ("# TYPE a gauge\n# TYPE a gauge\na 1\n", "second TYPE"),
            ("# TYPE a gauge\na 1 2 3\n", "trailing field"),
            ("# TYPE a gauge\n", "no samples"),
            ("# TYPE a foo\na 1\n", "unknown type"),
        ] {
            assert!(parse_exposition(bad).is_err(), "accepted ({why}): {bad:?}");
        }
    }
}
