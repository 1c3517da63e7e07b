//! The terminal: worker output multiplexed with an aligned, coloured `PORT |` prefix
//! per worker (as honcho/foreman do), and ferrolb's own lines under `ferrolb |`.
//! Colour only when stdout is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::shim::{PID_MARKER, PID_MARKER_END};

/// ANSI colours cycled through by worker index (cyan, yellow, green, magenta, blue,
/// bright red, then bright variants).
const COLOURS: [&str; 10] = ["36", "33", "32", "35", "34", "91", "96", "93", "92", "95"];
/// The name on ferrolb's own lines.
const SELF_NAME: &str = "ferrolb";
/// Longest line forwarded at once; longer lines are cut into pieces (a worker
/// printing megabytes without a newline must not grow memory): 64 KiB.
const MAX_LINE: usize = 64 * 1024;

/// Writes whole lines to stdout, one `write` per line so lines never interleave.
#[derive(Debug)]
pub struct Console {
    colour: bool,
    width: usize,
    out: Mutex<()>,
}

impl Console {
    /// A console for workers on `ports` (for the prefix width); colour when stdout is a
    /// terminal.
    pub fn new(ports: &[u16]) -> Console {
        let width = ports
            .iter()
            .map(|p| p.to_string().len())
            .chain([SELF_NAME.len()])
            .max()
            .unwrap_or(SELF_NAME.len());
        Console {
            colour: std::io::stdout().is_terminal(),
            width,
            out: Mutex::new(()),
        }
    }

    /// Whether lines are coloured.
    pub fn colour(&self) -> bool {
        self.colour
    }

    /// One of ferrolb's own lines (bold when coloured).
    pub fn say(&self, msg: &str) {
        for line in msg.lines() {
            self.write(SELF_NAME, "1", line.as_bytes());
        }
    }

    /// One line of the worker with index `index` on `port`.
    pub fn worker_line(&self, index: usize, port: u16, line: &[u8]) {
        self.write(&port.to_string(), COLOURS[index % COLOURS.len()], line);
    }

    fn write(&self, name: &str, colour: &str, line: &[u8]) {
        let mut buf = Vec::with_capacity(line.len() + 32);
        if self.colour {
            buf.extend_from_slice(
                format!("\x1b[{colour}m{name:>w$} |\x1b[0m ", w = self.width).as_bytes(),
            );
        } else {
            buf.extend_from_slice(format!("{name:>w$} | ", w = self.width).as_bytes());
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let _guard = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A closed terminal must not stop the balancer.
        let _ = std::io::stdout().lock().write_all(&buf);
    }
}

/// Takes the shim's pid announcement out of `line`, if there; returns the pid.
pub fn take_pid_marker(line: &mut Vec<u8>) -> Option<u32> {
    let start = memchr::memmem::find(line, PID_MARKER.as_bytes())?;
    let rest = &line[start + PID_MARKER.len()..];
    let end = memchr::memmem::find(rest, PID_MARKER_END.as_bytes())?;
    let pid = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let stop = start + PID_MARKER.len() + end + PID_MARKER_END.len();
    line.drain(start..stop);
    Some(pid)
}

/// Forwards `reader` line by line to the console under the worker's prefix until EOF,
/// passing the shim's pid announcement to `on_pid` instead.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    console: Arc<Console>,
    index: usize,
    port: u16,
    on_pid: impl Fn(u32),
) {
    let mut r = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        if let Some(pid) = take_pid_marker(&mut line) {
            on_pid(pid);
            if line.is_empty() {
                continue;
            }
        }
        console.worker_line(index, port, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_taken_out_anywhere() {
        let mut l = format!("abc{PID_MARKER}4242{PID_MARKER_END}def").into_bytes();
        assert_eq!(take_pid_marker(&mut l), Some(4242));
        assert_eq!(l, b"abcdef");
        let mut l = b"plain".to_vec();
        assert_eq!(take_pid_marker(&mut l), None);
        let mut l = format!("{PID_MARKER}x{PID_MARKER_END}").into_bytes();
        assert_eq!(take_pid_marker(&mut l), None);
    }

    #[test]
    fn prefix_width_covers_ports_and_name() {
        assert_eq!(Console::new(&[8001, 8002]).width, 7);
        assert_eq!(Console::new(&[]).width, 7);
    }
}
