//! memhog: allocates and touches memory, for testing memory limits and the
//! rig's OOM detection.
//!
//! `memhog [MiB]`: touch MiB (default: without end, 1 MiB at a time), print
//! `holding N MiB` and sleep until killed. Without an argument it keeps
//! allocating until the kernel's OOM killer stops it.

use std::io::Write;
use std::time::Duration;

fn main() {
    let target: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        if target.is_some_and(|t| held.len() >= t) {
            println!("holding {} MiB", held.len());
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        // Filled with non-zero bytes so every page is really resident.
        held.push(vec![0xA5; 1 << 20]);
    }
}
