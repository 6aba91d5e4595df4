//! The event catalogue as a text table, for people.

use crate::model::{Handling, Model};

/// One line per event: event type, topics, notification, category, priority, recipient rule.
pub fn catalogue(model: &Model) -> String {
    let header = ["event", "topics", "notification", "category", "priority", "recipient"];
    let rows: Vec<[String; 6]> = model
        .events
        .iter()
        .map(|event| {
            let mut event_type = event.event_type.clone();
            for alias in &event.aliases {
                event_type.push_str(&format!(" | {alias}"));
            }
            let notification = match event.handling {
                Handling::Declarative => event.notification.clone(),
                Handling::Custom => format!("{} (custom)", event.notification),
            };
            [
                event_type,
                event.topics.join(" | "),
                notification,
                event.category.to_string(),
                event.priority.to_string(),
                event.recipient_rule(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]));
    }
    out
}
