//! What a run reports: one table per scenario (printed as soon as it is measured, in
//! Markdown so it can be pasted into the README), the targets with met / not met, and
//! the same figures as one JSON document.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// One scenario's table.
#[derive(Debug, Clone)]
pub struct Section {
    /// The key in the JSON document (`ingest`, `end_to_end`, …).
    pub key: &'static str,
    pub title: String,
    /// How it was measured: printed under the title.
    pub notes: Vec<String>,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// The figures, machine-readable.
    pub json: Value,
}

impl Section {
    pub fn print(&self) {
        println!("\n## {}\n", self.title);
        for n in &self.notes {
            println!("{n}");
        }
        if !self.notes.is_empty() {
            println!();
        }
        println!("| {} |", self.header.join(" | "));
        println!("|{}", "---|".repeat(self.header.len()));
        for r in &self.rows {
            println!("| {} |", r.join(" | "));
        }
    }
}

/// A target from issue 8 or 12 and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    pub goal: &'static str,
    pub measured: String,
    pub met: bool,
}

/// Everything one command measured.
#[derive(Debug, Default)]
pub struct Report {
    pub sections: Vec<Section>,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn add(&mut self, section: Section) {
        section.print();
        self.sections.push(section);
    }

    pub fn target(&mut self, goal: &'static str, measured: String, met: bool) {
        self.targets.push(Target {
            goal,
            measured,
            met,
        });
    }

    pub fn print_targets(&self) {
        if self.targets.is_empty() {
            return;
        }
        println!("\n## Targets (issues 8 and 12)\n");
        println!("| target | measured | met |");
        println!("|---|---|---|");
        for t in &self.targets {
            let met = if t.met { "yes" } else { "**no**" };
            println!("| {} | {} | {met} |", t.goal, t.measured);
        }
    }

    /// Write the JSON document; `context` carries the command, machine and mode.
    pub fn write_json(&self, path: &Path, context: Value) -> anyhow::Result<()> {
        let mut sections = serde_json::Map::new();
        for s in &self.sections {
            sections.insert(
                s.key.to_string(),
                json!({ "title": s.title, "notes": s.notes, "figures": s.json }),
            );
        }
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| json!({ "goal": t.goal, "measured": t.measured, "met": t.met }))
            .collect();
        let doc = json!({ "run": context, "scenarios": sections, "targets": targets });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A number with `d` decimals.
pub fn f(v: f64, d: usize) -> String {
    format!("{v:.d$}")
}

/// A ratio like `0.42×`.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "–".into();
    }
    format!("{:.2}×", a / b)
}
