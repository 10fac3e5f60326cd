//! Server settings people change from the web UI: the default expiration of
//! new uploads. Validation here; the values live in `storage::settings`.

use serde::{Deserialize, Serialize};

use crate::entry::ValidationError;

/// The reference's default: files expire after 30 days.
pub const DEFAULT_EXPIRATION_DAYS: u32 = 30;
/// Ten years; longer is "never".
pub const MAX_EXPIRATION_DAYS: u32 = 3650;

/// `PUT /api/settings` and `GET /api/settings`, in the reference's JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsJson {
    /// Ignored (and may be absent) when `defaultNeverExpire` is true.
    #[serde(default)]
    pub default_expiration_days: Option<i64>,
    #[serde(default)]
    pub default_never_expire: bool,
}

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `None`: new uploads never expire by default.
    pub default_expiration_days: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_expiration_days: Some(DEFAULT_EXPIRATION_DAYS),
        }
    }
}

impl Settings {
    pub fn from_json(json: &SettingsJson) -> Result<Self, ValidationError> {
        if json.default_never_expire {
            return Ok(Settings {
                default_expiration_days: None,
            });
        }
        match json.default_expiration_days {
            Some(d) if (1..=i64::from(MAX_EXPIRATION_DAYS)).contains(&d) => Ok(Settings {
                default_expiration_days: Some(d as u32),
            }),
            Some(d) => Err(ValidationError(format!(
                "defaultExpirationDays must be from 1 to {MAX_EXPIRATION_DAYS}, or set defaultNeverExpire; got {d}"
            ))),
            None => Err(ValidationError(
                "give defaultExpirationDays (1 to 3650) or defaultNeverExpire: true".into(),
            )),
        }
    }

    pub fn to_json(self) -> SettingsJson {
        SettingsJson {
            default_expiration_days: self.default_expiration_days.map(i64::from),
            default_never_expire: self.default_expiration_days.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(days: Option<i64>, never: bool) -> SettingsJson {
        SettingsJson {
            default_expiration_days: days,
            default_never_expire: never,
        }
    }

    #[test]
    fn days_from_1_to_3650_or_never() {
        assert_eq!(
            Settings::from_json(&json(Some(7), false))
                .unwrap()
                .default_expiration_days,
            Some(7)
        );
        assert_eq!(
            Settings::from_json(&json(None, true))
                .unwrap()
                .default_expiration_days,
            None
        );
        assert!(Settings::from_json(&json(Some(3650), false)).is_ok());
        for bad in [0, -1, 3651] {
            let e = Settings::from_json(&json(Some(bad), false)).unwrap_err();
            assert!(e.0.contains("from 1 to 3650"), "{e}");
        }
        assert!(Settings::from_json(&json(None, false)).is_err());
        let s = Settings::default();
        assert_eq!(Settings::from_json(&s.to_json()).unwrap(), s);
    }
}
