//! `herald-codegen`: regenerate the checked-in TypeScript, check the definitions, print the catalogue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
herald-codegen: the herald event generator

USAGE:
    herald-codegen [--defs DIR] <COMMAND>

COMMANDS:
    catalogue            print every event: type, topic, notification, category, priority, recipient
    check                validate the definitions and report every problem
    typescript [--check] write clients/typescript/src/events.ts (with --check: fail if it is stale)
    rust                 print the generated Rust (what build.rs includes)

OPTIONS:
    --defs DIR           the definitions folder (default: event-defs/ in the nearest ancestor that has one)
    -h, --help           print this help
";

/// Where the checked-in TypeScript lives, relative to the workspace root.
const TYPESCRIPT_PATH: &str = "clients/typescript/src/events.ts";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn run(mut args: Vec<String>) -> Result<ExitCode, String> {
    if args.iter().any(|arg| arg == "-h" || arg == "--help") || args.is_empty() {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let defs = match args.iter().position(|arg| arg == "--defs") {
        Some(index) => {
            let dir = args.get(index + 1).ok_or("--defs needs a folder")?.clone();
            args.drain(index..=index + 1);
            PathBuf::from(dir)
        }
        None => find_defs()?,
    };
    let command = args.first().cloned().unwrap_or_default();
    let model = match herald_codegen::load(&defs) {
        Ok(model) => model,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match (command.as_str(), &args[1..]) {
        ("catalogue", []) => print!("{}", herald_codegen::catalogue(&model)),
        ("check", []) => {
            println!("{}: {} events, {} types, no problems", defs.display(), model.events.len(), model.types.len())
        }
        ("rust", []) => print!("{}", herald_codegen::generate_rust(&model)),
        ("typescript", rest) if rest.is_empty() || rest == ["--check"] => {
            let root = defs.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let path = root.join(TYPESCRIPT_PATH);
            let fresh = herald_codegen::generate_typescript(&model);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if rest.is_empty() {
                if current != fresh {
                    std::fs::write(&path, &fresh)
                        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                }
                println!("{} is up to date", path.display());
            } else if current != fresh {
                eprintln!("{} is stale: run `cargo run -p herald-codegen -- typescript`", path.display());
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => return Err(format!("unknown command {:?}\n\n{USAGE}", args.join(" "))),
    }
    Ok(ExitCode::SUCCESS)
}

/// The `event-defs/` folder of the current directory or its nearest ancestor.
fn find_defs() -> Result<PathBuf, String> {
    let start = std::env::current_dir().map_err(|error| format!("cannot read the current directory: {error}"))?;
    start
        .ancestors()
        .map(|dir| dir.join("event-defs"))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| format!("no event-defs/ folder in {} or above it; pass --defs DIR", start.display()))
}
