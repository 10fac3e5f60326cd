//! Where attack connections come from: a list of loopback addresses, or a count spread over
//! 127.0.0.0/8 away from 127.0.0.1 (the polite clients' and the rig's health probe's address).
//! Linux routes all of 127/8 to `lo`, so any of them can be bound before connecting.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::Scenario;

/// Most source addresses one attack may use.
pub const MAX_SOURCES: usize = 4096;

/// `sources = ["127.0.0.2", "127.0.0.3"]` or `sources = 16`. Empty (the default): the kernel
/// picks, i.e. 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    /// This many addresses, `127.<class>.<i / 250>.<i % 250 + 2>`: each attack class gets its
    /// own second octet (see `class_octet`), so attacks of one scenario never share an address.
    Count(usize),
    List(Vec<IpAddr>),
}

impl Default for Sources {
    fn default() -> Self {
        Sources::List(Vec::new())
    }
}

impl Sources {
    /// The addresses for `scenario`'s connections, connection `i` using `[i % len]`.
    pub fn addresses(&self, scenario: Scenario) -> Vec<IpAddr> {
        match self {
            Sources::List(list) => list.clone(),
            Sources::Count(n) => (0..*n)
                .map(|i| {
                    let (high, low) = (i / 250, i % 250 + 2);
                    IpAddr::V4(Ipv4Addr::new(
                        127,
                        class_octet(scenario),
                        u8::try_from(high).unwrap_or(u8::MAX),
                        u8::try_from(low).unwrap_or(u8::MAX),
                    ))
                })
                .collect(),
        }
    }

    /// Refuses addresses that are not loopback, and too many of them.
    pub fn check(&self) -> Result<(), String> {
        let count = match self {
            Sources::Count(n) => *n,
            Sources::List(list) => {
                if let Some(ip) = list.iter().find(|ip| !ip.is_loopback()) {
                    return Err(format!(
                        "source {ip} is not a loopback address: attacks stay on this machine"
                    ));
                }
                list.len()
            }
        };
        if count > MAX_SOURCES {
            return Err(format!("sources: {count} addresses, at most {MAX_SOURCES}"));
        }
        Ok(())
    }
}

/// The second octet of a class's counted addresses.
fn class_octet(scenario: Scenario) -> u8 {
    match scenario {
        Scenario::LoginBodyFlood => 11,
        Scenario::StalledGuestUpload => 12,
        Scenario::SlowBody => 13,
        Scenario::IdleFlood => 14,
        Scenario::HistoryFlood => 15,
        _ => 10,
    }
}

impl FromStr for Sources {
    type Err = String;

    /// `16` or `127.0.0.2,127.0.0.3`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = text.trim().parse::<usize>() {
            return Ok(Sources::Count(n));
        }
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("{s:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Sources::List)
    }
}

impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sources::Count(n) => write!(f, "{n}"),
            Sources::List(list) => {
                let text: Vec<String> = list.iter().map(IpAddr::to_string).collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_spread_over_loopback_per_class() {
        let a = Sources::Count(300).addresses(Scenario::SlowBody);
        assert_eq!(a.len(), 300);
        assert_eq!(a[0], "127.13.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(a[250], "127.13.1.2".parse::<IpAddr>().unwrap());
        assert!(a.iter().all(|ip| ip.is_loopback()));
        let other = Sources::Count(1).addresses(Scenario::IdleFlood);
        assert_ne!(other[0], a[0]);
    }

    #[test]
    fn parses_and_refuses_what_leaves_the_machine() {
        assert_eq!("4".parse::<Sources>(), Ok(Sources::Count(4)));
        let list: Sources = "127.0.0.2, 127.0.0.3".parse().unwrap();
        list.check().unwrap();
        assert_eq!(list.to_string(), "127.0.0.2,127.0.0.3");
        let outside: Sources = "10.0.0.1".parse().unwrap();
        assert!(outside.check().unwrap_err().contains("not a loopback"));
        assert!(Sources::Count(MAX_SOURCES + 1).check().is_err());
        let toml: Sources = serde_json::from_str(r#"["127.0.0.9"]"#).unwrap();
        assert_eq!(toml.addresses(Scenario::IdleFlood).len(), 1);
    }
}
