//! The host's side of the guest agent's stream (the format is in `vm_wire`;
//! `vm-agent` writes it): lines in, messages out. Pure, so it is tested
//! without a guest.

use memstat::cgroup::Pressure;
use memstat::system::SystemMemory;
use run_format::{FileSizes, ProcessSample, ServerStats};
use vm_wire::{Line, Tag};

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
    /// The tag whose text the next lines are (`@meminfo`, `@status`, `@psi`).
    section: Option<Tag>,
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

impl Parser {
    /// Feeds one line (without its newline); returns a message when one is complete.
    pub fn push(&mut self, line: &str) -> Option<Message> {
        let (tag, rest) = match vm_wire::parse(line) {
            Line::Tag(tag, rest) => (tag, rest),
            Line::Unknown(_) => {
                // A newer agent's tag: it ends the open section.
                if let Some(frame) = self.frame.as_mut() {
                    frame.section = None;
                }
                return None;
            }
            Line::Text(text) => {
                let frame = self.frame.as_mut()?;
                frame.size += text.len() + 1;
                if frame.size > MAX_FRAME {
                    self.frame = None;
                    return None;
                }
                let text_of = match frame.section? {
                    Tag::Meminfo => &mut frame.meminfo,
                    Tag::Status => &mut frame.status,
                    Tag::Psi => &mut frame.psi,
                    _ => return None,
                };
                text_of.push_str(text);
                text_of.push('\n');
                return None;
            }
        };
        match tag {
            Tag::Hello => Some(Message::Hello {
                kernel: rest.trim().to_owned(),
            }),
            Tag::Started => {
                vm_wire::parse_number(rest).map(|pid| Message::Started { pid: pid as u32 })
            }
            Tag::Failed => Some(Message::Failed(rest.trim().to_owned())),
            Tag::Exit => {
                let (code, signal) = vm_wire::parse_exit(rest);
                Some(Message::Exit { code, signal })
            }
            Tag::Sample => {
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
            Tag::End => self
                .frame
                .take()
                .map(|f| Message::Sample(Box::new(f.finish()))),
            _ => {
                let frame = self.frame.as_mut()?;
                frame.section = tag.opens_section().then_some(tag);
                match tag {
                    Tag::Pss => frame.pss_kib = vm_wire::parse_number(rest),
                    Tag::Fds => frame.fds = vm_wire::parse_number(rest),
                    Tag::Vmstat => frame.oom_kills = vm_wire::parse_number(rest),
                    Tag::Files => {
                        frame.files = vm_wire::parse_files(rest).map(|(db, wal, shm)| FileSizes {
                            db_bytes: db,
                            wal_bytes: wal,
                            shm_bytes: shm,
                            ..FileSizes::default()
                        })
                    }
                    Tag::Stats => frame.stats = serde_json::from_str(rest).ok(),
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

    /// This machine's own /proc, framed the way the agent frames it (with the wire's tags).
    fn frame() -> String {
        let pid = std::process::id();
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        let psi = "some avg10=1.50 avg60=0.00 avg300=0.00 total=100\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=50\n";
        let stats = r#"{"allocator":{"resident_bytes":5}}"#;
        [
            format!("{} 12.50 {pid}\n", Tag::Sample),
            format!("{}\n{}", Tag::Meminfo, read("/proc/meminfo")),
            format!("{}\n{}", Tag::Status, read(&format!("/proc/{pid}/status"))),
            format!("{} 2048\n{} 7\n{} 3\n", Tag::Pss, Tag::Fds, Tag::Vmstat),
            format!("{}\n{psi}", Tag::Psi),
            format!(
                "{} {}\n",
                Tag::Files,
                vm_wire::files_words(4096, 8192, 32768)
            ),
            format!("{} {stats}\n{}\n", Tag::Stats, Tag::End),
        ]
        .concat()
    }

    fn parse(text: &str) -> Vec<Message> {
        let mut p = Parser::default();
        text.lines().filter_map(|l| p.push(l)).collect()
    }

    #[test]
    fn a_frame_becomes_a_sample_with_every_layer() {
        let messages = parse(&format!(
            "{} 6.1.0-48-amd64\n{} 112\n{}",
            Tag::Hello,
            Tag::Started,
            frame()
        ));
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
        let start = text.find(&Tag::Status.to_string()).unwrap();
        let end = text.find(&Tag::Psi.to_string()).unwrap();
        let without = format!("{}{}", &text[..start], &text[end..]);
        let [Message::Sample(s)] = &parse(&without)[..] else {
            panic!()
        };
        assert!(s.process.is_none());
        assert!(s.meminfo.is_some());
    }

    #[test]
    fn exits_and_cut_frames() {
        let exit = |code, signal| format!("{} {}\n", Tag::Exit, vm_wire::exit_words(code, signal));
        let m = parse(&(exit(None, Some(9)) + &exit(Some(0), None)));
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
        p.push(&format!("{} 1 1", Tag::Sample));
        p.push(&Tag::Meminfo.to_string());
        for _ in 0..(MAX_FRAME / 10) {
            p.push("Junk:    1 kB");
        }
        assert!(p.push(&Tag::End.to_string()).is_none());
    }
}
