//! The traffic a run sends (`Scenario`) and how `mixed` weighs its parts (`MixedWeights`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The traffic one run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Log in, then stream a browser-shaped multipart upload (`file` + `note`) of `size` bytes.
    Upload,
    /// Fetch uploaded entries whole and by random Range requests, verifying every byte.
    Download,
    /// An upload throttled to `slow_rate`, like a phone on a bad link.
    SlowUpload,
    /// An upload that disconnects after `abort_fraction` of its body.
    AbortUpload,
    /// Users spread over the four scenarios above by `mixed` weights.
    Mixed,
    /// A share's life, compressed for soaks: upload with an expiration `expire_after` ahead,
    /// download whole and one range (verified), then delete with probability
    /// `delete_fraction`; the rest expire and the server's GC removes them.
    Churn,
    /// A guest's upload: the owner logs in and creates an unlimited guest link per user, then
    /// each iteration streams a `file`-only multipart upload of `size` bytes to
    /// `/api/guest/{id}`; stored files become downloadable like owner uploads.
    GuestUpload,
    /// Delete uploaded entries (`DELETE /api/entry/{id}`), each once, and check they are gone.
    /// Not part of `mixed`: downloads there would fetch what it deleted.
    Delete,
    /// Hostile (raw sockets, `hostile`): `POST /api/auth` with a 2 MB JSON body per
    /// connection, response never read.
    LoginBodyFlood,
    /// Hostile: multipart uploads to an unlimited guest link that send `stall-after` bytes and
    /// stall.
    StalledGuestUpload,
    /// Hostile: POST bodies trickled one byte per `trickle-interval`.
    SlowBody,
    /// Hostile: connections that send nothing, reopened when the server closes them.
    IdleFlood,
    /// Hostile: `history-requests` pipelined one-byte Range downloads of one small entry, then
    /// its download history fetched as the owner.
    HistoryFlood,
}

impl Scenario {
    /// Every scenario, in the order help texts list them.
    pub const ALL: [Scenario; 13] = [
        Scenario::Upload,
        Scenario::Download,
        Scenario::SlowUpload,
        Scenario::AbortUpload,
        Scenario::Mixed,
        Scenario::Churn,
        Scenario::GuestUpload,
        Scenario::Delete,
        Scenario::LoginBodyFlood,
        Scenario::StalledGuestUpload,
        Scenario::SlowBody,
        Scenario::IdleFlood,
        Scenario::HistoryFlood,
    ];

    /// An attack class: raw-socket clients in `hostile`, not goose users.
    pub const fn is_hostile(self) -> bool {
        matches!(
            self,
            Scenario::LoginBodyFlood
                | Scenario::StalledGuestUpload
                | Scenario::SlowBody
                | Scenario::IdleFlood
                | Scenario::HistoryFlood
        )
    }

    /// The kebab-case name used on the command line, in TOML and in the summary.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Upload => "upload",
            Scenario::Download => "download",
            Scenario::SlowUpload => "slow-upload",
            Scenario::AbortUpload => "abort-upload",
            Scenario::Mixed => "mixed",
            Scenario::Churn => "churn",
            Scenario::GuestUpload => "guest-upload",
            Scenario::Delete => "delete",
            Scenario::LoginBodyFlood => "login-body-flood",
            Scenario::StalledGuestUpload => "stalled-guest-upload",
            Scenario::SlowBody => "slow-body",
            Scenario::IdleFlood => "idle-flood",
            Scenario::HistoryFlood => "history-flood",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a scenario name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseScenarioError {
    #[error(
        "unknown scenario {0:?} (one of: upload, download, slow-upload, abort-upload, mixed, delete, \
         churn, guest-upload, login-body-flood, stalled-guest-upload, slow-body, idle-flood, \
         history-flood)"
    )]
    Unknown(String),
}

impl FromStr for Scenario {
    type Err = ParseScenarioError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| ParseScenarioError::Unknown(name.to_owned()))
    }
}

/// How `mixed` spreads users: goose allocates users to scenarios round-robin in proportion to
/// these weights (0 leaves a scenario out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MixedWeights {
    pub upload: usize,
    pub download: usize,
    pub slow_upload: usize,
    pub abort_upload: usize,
}

impl Default for MixedWeights {
    fn default() -> Self {
        MixedWeights {
            upload: 3,
            download: 3,
            slow_upload: 1,
            abort_upload: 1,
        }
    }
}

impl MixedWeights {
    /// The scenarios with a non-zero weight.
    pub fn weighted(&self) -> Vec<(Scenario, usize)> {
        [
            (Scenario::Upload, self.upload),
            (Scenario::Download, self.download),
            (Scenario::SlowUpload, self.slow_upload),
            (Scenario::AbortUpload, self.abort_upload),
        ]
        .into_iter()
        .filter(|&(_, weight)| weight > 0)
        .collect()
    }
}

impl FromStr for MixedWeights {
    type Err = String;

    /// `upload=3,download=3,slow-upload=1,abort-upload=1`; unnamed scenarios get weight 0.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut weights = MixedWeights {
            upload: 0,
            download: 0,
            slow_upload: 0,
            abort_upload: 0,
        };
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not NAME=WEIGHT"))?;
            let weight: usize = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight {weight:?} of {name} is not a whole number"))?;
            let slot = match name.trim() {
                "upload" => &mut weights.upload,
                "download" => &mut weights.download,
                "slow-upload" => &mut weights.slow_upload,
                "abort-upload" => &mut weights.abort_upload,
                other => {
                    return Err(format!(
                        "{other:?} cannot be mixed (upload, download, slow-upload, abort-upload)"
                    ));
                }
            };
            *slot = weight;
        }
        Ok(weights)
    }
}

impl fmt::Display for MixedWeights {
    /// The form `FromStr` reads: `upload=3,download=3,slow-upload=1,abort-upload=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weighted()
            .into_iter()
            .map(|(scenario, weight)| format!("{scenario}={weight}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        assert_eq!(
            "guest-uploads".parse::<Scenario>(),
            Err(ParseScenarioError::Unknown("guest-uploads".into()))
        );
    }

    #[test]
    fn mixed_weights_parse() {
        let w: MixedWeights = "upload=2, abort-upload=1".parse().unwrap();
        assert_eq!(
            w.weighted(),
            vec![(Scenario::Upload, 2), (Scenario::AbortUpload, 1)]
        );
        assert!("guest-upload=1".parse::<MixedWeights>().is_err());
    }

    #[test]
    fn mixed_weights_print_what_they_parse() {
        let w = MixedWeights::default();
        assert_eq!(w.to_string().parse::<MixedWeights>(), Ok(w));
    }
}
