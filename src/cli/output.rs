//! How the client commands print: progress bars on a terminal only (never in pipes, logs or with
//! `--json`), human tables, or one JSON document for scripts.

use std::io::IsTerminal as _;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// The progress bars of one command; hidden unless stderr is a terminal and the output is for people.
pub struct Progress {
    bars: MultiProgress,
}

impl Progress {
    pub fn new(json: bool) -> Self {
        let visible = !json && std::io::stderr().is_terminal();
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Self { bars: MultiProgress::with_draw_target(target) }
    }

    /// A byte bar: bytes done, total, rate and ETA.
    pub fn bytes(&self, label: &str, total: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        bar
    }

    /// Prints a line above the bars (or plainly, when there are none).
    pub fn println(&self, line: &str) {
        if self.bars.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }
}

/// A table with a header row, columns as wide as their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `sizeBytes` (a string on the Gemini wire) or `bytes` (a number on the import wire), for people.
pub fn size_of(file: &Value) -> String {
    let bytes = file["sizeBytes"].as_str().and_then(|s| s.parse().ok()).or_else(|| file["bytes"].as_u64());
    bytes.map_or_else(|| "-".to_owned(), |b| HumanBytes(b).to_string())
}

pub fn print_json(value: &Value) {
    emit(&(serde_json::to_string_pretty(value).expect("JSON values serialize") + "\n"));
}

/// Writes to stdout. A reader that went away (`filegate ls | head`) ends the output quietly, as with any
/// Unix tool, where `print!` would panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to stdout: {err}");
    }
}

/// `println!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let out =
            table(&["NAME", "SIZE"], &[vec!["files/a".into(), "1 B".into()], vec!["b".into(), "20.00 MiB".into()]]);
        assert_eq!(out, "NAME     SIZE\nfiles/a  1 B\nb        20.00 MiB\n");
    }

    #[test]
    fn sizes_come_from_either_wire() {
        assert_eq!(size_of(&serde_json::json!({"sizeBytes": "2048"})), "2.00 KiB");
        assert_eq!(size_of(&serde_json::json!({"bytes": 5})), "5 B");
        assert_eq!(size_of(&serde_json::json!({})), "-");
    }
}
