//! The host's side of the guest agent's stream (`vm-agent/src/frame.rs`
//! writes it): lines in, messages out. Pure, so it is tested without a guest.

use memstat::cgroup::Pressure;
use memstat::system::SystemMemory;
use run_format::{FileSizes, ProcessSample, ServerStats};

/// A frame's text is a few KiB; a frame growing past this is dropped (a
/// lost `@end`), so a broken stream cannot grow the rig's memory.
const MAX_FRAME: usize = 256 << 10;

/// One sample from inside the guest.
#[derive(Debug, Clone, Default)]
pub struct AgentSample {
    /// The guest's uptime when it was taken.
    pub uptime_s: f64,
    pub meminfo: Option<SystemMemory>,
    pub process: Option<ProcessSample>,
    /// `oom_kill` of the guest's /proc/vmstat.
    pub oom_kills: Option<u64>,
    pub pressure: Option<Pressure>,
    pub files: Option<FileSizes>,
    /// The server's `/debug/stats`.
    pub stats: Option<ServerStats>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Hello {
        kernel: String,
    },
    Started {
        pid: u32,
    },
    /// The agent could not start the server.
    Failed(String),
    Sample(Box<AgentSample>),
    /// The server ended: exit code or signal.
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

#[derive(Default)]
pub struct Parser {
    frame: Option<Frame>,
}

#[derive(Default)]
struct Frame {
    uptime_s: f64,
    section: Section,
    meminfo: String,
    status: String,
    psi: String,
    pss_kib: Option<u64>,
    fds: Option<u64>,
    oom_kills: Option<u64>,
    files: Option<FileSizes>,
    stats: Option<ServerStats>,
    size: usize,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Section {
    #[default]
    None,
    Meminfo,
    Status,
    Psi,
}

impl Parser {
    /// Feeds one line (without its newline); returns a message when one is complete.
    pub fn push(&mut self, line: &str) -> Option<Message> {
        let (word, rest) = match line.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').unwrap_or((tagged, "")),
            None => {
                let frame = self.frame.as_mut()?;
                frame.size += line.len() + 1;
                if frame.size > MAX_FRAME {
                    self.frame = None;
                    return None;
                }
                let text = match frame.section {
                    Section::Meminfo => &mut frame.meminfo,
                    Section::Status => &mut frame.status,
                    Section::Psi => &mut frame.psi,
                    Section::None => return None,
                };
                text.push_str(line);
                text.push('\n');
                return None;
            }
        };
        let number = |s: &str| s.trim().parse::<u64>().ok();
        match word {
            "hello" => Some(Message::Hello {
                kernel: rest.trim().to_owned(),
            }),
            "started" => number(rest).map(|pid| Message::Started { pid: pid as u32 }),
            "failed" => Some(Message::Failed(rest.trim().to_owned())),
            "exit" => {
                let mut parts = rest.split_whitespace().map(|p| p.parse::<i32>().ok());
                Some(Message::Exit {
                    code: parts.next().flatten(),
                    signal: parts.next().flatten(),
                })
            }
            "sample" => {
                self.frame = Some(Frame {
                    uptime_s: rest
                        .split_whitespace()
                        .next()
                        .and_then(|u| u.parse().ok())
                        .unwrap_or(0.0),
                    ..Frame::default()
                });
                None
            }
            "end" => self
                .frame
                .take()
                .map(|f| Message::Sample(Box::new(f.finish()))),
            _ => {
                let frame = self.frame.as_mut()?;
                frame.section = Section::None;
                match word {
                    "meminfo" => frame.section = Section::Meminfo,
                    "status" => frame.section = Section::Status,
                    "psi" => frame.section = Section::Psi,
                    "pss" => frame.pss_kib = number(rest),
                    "fds" => frame.fds = number(rest),
                    "vmstat" => frame.oom_kills = number(rest),
                    "files" => {
                        let sizes: Vec<u64> = rest.split_whitespace().filter_map(number).collect();
                        if let [db, wal, shm] = sizes[..] {
                            frame.files = Some(FileSizes {
                                db_bytes: db,
                                wal_bytes: wal,
                                shm_bytes: shm,
                            });
                        }
                    }
                    "stats" => frame.stats = serde_json::from_str(rest).ok(),
                    _ => {}
                }
                None
            }
        }
    }
}

impl Frame {
    fn finish(self) -> AgentSample {
        let process = memstat::process::parse_status(&self.status)
            .ok()
            .map(|mut memory| {
                memory.open_fds = self.fds;
                ProcessSample {
                    memory,
                    pss_bytes: self.pss_kib.map(|k| k * 1024),
                }
            });
        AgentSample {
            uptime_s: self.uptime_s,
            meminfo: memstat::system::parse_meminfo(&self.meminfo).ok(),
            process,
            oom_kills: self.oom_kills,
            pressure: memstat::cgroup::parse_pressure(&self.psi),
            files: self.files,
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's own /proc, framed the way the agent frames it.
    fn frame() -> String {
        let pid = std::process::id();
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        format!(
            "@sample 12.50 {pid}\n@meminfo\n{}@status\n{}@pss 2048\n@fds 7\n@vmstat 3\n@psi\n\
             some avg10=1.50 avg60=0.00 avg300=0.00 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=50\n\
             @files 4096 8192 32768\n@stats {{\"allocator\":{{\"resident_bytes\":5}}}}\n@end\n",
            read("/proc/meminfo"),
            read(&format!("/proc/{pid}/status")),
        )
    }

    fn parse(text: &str) -> Vec<Message> {
        let mut p = Parser::default();
        text.lines().filter_map(|l| p.push(l)).collect()
    }

    #[test]
    fn a_frame_becomes_a_sample_with_every_layer() {
        let messages = parse(&format!("@hello 6.1.0-48-amd64\n@started 112\n{}", frame()));
        assert!(matches!(&messages[0], Message::Hello { kernel } if kernel == "6.1.0-48-amd64"));
        assert!(matches!(messages[1], Message::Started { pid: 112 }));
        let Message::Sample(s) = &messages[2] else {
            panic!("{messages:?}")
        };
        let own = memstat::system::read().unwrap();
        assert_eq!(
            s.meminfo.as_ref().unwrap().mem_total_bytes,
            own.mem_total_bytes
        );
        let p = s.process.as_ref().unwrap();
        assert!(p.memory.vm_rss_bytes > 0);
        assert_eq!(p.memory.open_fds, Some(7));
        assert_eq!(p.pss_bytes, Some(2048 * 1024));
        assert_eq!(s.oom_kills, Some(3));
        assert_eq!(s.pressure.as_ref().unwrap().full_total_us, 50);
        assert_eq!(s.files.unwrap().shm_bytes, 32768);
        assert_eq!(s.stats.as_ref().unwrap().allocator.resident_bytes, Some(5));
        assert_eq!(s.uptime_s, 12.5);
    }

    #[test]
    fn a_gone_server_leaves_its_figures_missing_not_zero() {
        let text = frame();
        let start = text.find("@status").unwrap();
        let end = text.find("@psi").unwrap();
        let without = format!("{}{}", &text[..start], &text[end..]);
        let [Message::Sample(s)] = &parse(&without)[..] else {
            panic!()
        };
        assert!(s.process.is_none());
        assert!(s.meminfo.is_some());
    }

    #[test]
    fn exits_and_cut_frames() {
        let m = parse("@exit - 9\n@exit 0 -\n");
        assert!(matches!(
            m[0],
            Message::Exit {
                code: None,
                signal: Some(9)
            }
        ));
        assert!(matches!(
            m[1],
            Message::Exit {
                code: Some(0),
                signal: None
            }
        ));
        // A frame cut by the guest's death, then a whole one: only the whole one counts.
        let text = frame();
        let cut = &text[..text.len() / 2];
        let m = parse(&format!("{cut}\n{text}"));
        assert_eq!(m.len(), 1);
        // Lines outside a frame are ignored; an endless frame is dropped at the bound.
        assert!(parse("MemTotal: 1 kB\n").is_empty());
        let mut p = Parser::default();
        p.push("@sample 1 1");
        p.push("@meminfo");
        for _ in 0..(MAX_FRAME / 10) {
            p.push("Junk:    1 kB");
        }
        assert!(p.push("@end").is_none());
    }
}
