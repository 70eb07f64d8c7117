//! Progress of a run on stderr: a spinner on a terminal, else a plain line whenever the
//! numbers change (none with `--json`, so scripts read only the answer).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    spinner: Option<ProgressBar>,
    lines: bool,
    last: String,
}

impl Progress {
    pub fn new(json: bool) -> Self {
        if std::io::stderr().is_terminal() {
            let spinner = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(120));
            Self {
                spinner: Some(spinner),
                lines: false,
                last: String::new(),
            }
        } else {
            Self {
                spinner: None,
                lines: !json,
                last: String::new(),
            }
        }
    }

    pub fn update(&mut self, message: String) {
        if message == self.last {
            return;
        }
        if let Some(spinner) = &self.spinner {
            spinner.set_message(message.clone());
        } else if self.lines {
            eprintln!("{message}");
        }
        self.last = message;
    }

    pub fn finish(self) {
        if let Some(spinner) = self.spinner {
            spinner.finish_and_clear();
        }
    }
}
