//! `herald-codegen`: regenerate the checked-in TypeScript, AsyncAPI document and fixtures, check the
//! definitions, print the catalogue, compare two versions of the definitions.

mod compat_command;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE_TEMPLATE: &str = "\
herald-codegen: the herald event generator

USAGE:
    herald-codegen [--defs DIR] <COMMAND>

COMMANDS:
    catalogue [--html]   print every event: type, topic, notification, category, priority, recipient
                         (with --html: the static HTML catalogue that `asyncapi` writes)
    check                validate the definitions and report every problem
    typescript [--check] write clients/typescript/src/events.ts (with --check: fail if it is stale)
    fixtures [--check]   write tests/fixtures/envelopes/<notification>/<case>.{dumps,compact}.json from
                         every event's examples (with --check: fail if any is stale or left over)
    asyncapi [--check]   write clients/asyncapi/asyncapi.json (AsyncAPI 3.0: the Kafka topics and the
                         WebSocket protocol) and clients/asyncapi/events.html (the event catalogue)
    generate [--check]   all of the above: every checked-in file the definitions make
    rust                 print the generated Rust (what build.rs includes)
{COMPAT}
OPTIONS:
    --defs DIR           the definitions folder (default: event-defs/ in the nearest ancestor that has one)
    -h, --help           print this help
";

/// Where the checked-in TypeScript lives, relative to the workspace root.
const TYPESCRIPT_PATH: &str = "clients/typescript/src/events.ts";

fn usage() -> String {
    USAGE_TEMPLATE.replace("{COMPAT}", compat_command::USAGE)
}

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
        print!("{}", usage());
        return Ok(ExitCode::SUCCESS);
    }
    let defs = match args.iter().position(|arg| arg == "--defs") {
        Some(index) => {
            let dir = args.get(index + 1).ok_or("--defs needs a folder")?.clone();
            args.drain(index..=index + 1);
            Some(PathBuf::from(dir))
        }
        None => None,
    };
    let command = args.first().cloned().unwrap_or_default();
    if command == "compat" {
        return compat_command::run(&args[1..], || defs.map_or_else(find_defs, Ok));
    }
    let defs = match defs {
        Some(defs) => defs,
        None => find_defs()?,
    };
    let model = match herald_codegen::load(&defs) {
        Ok(model) => model,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match (command.as_str(), &args[1..]) {
        ("catalogue", []) => print!("{}", herald_codegen::catalogue(&model)),
        ("catalogue", [html]) if html == "--html" => print!("{}", herald_codegen::catalogue_html(&model)),
        ("check", []) => {
            println!("{}: {} events, {} types, no problems", defs.display(), model.events.len(), model.types.len())
        }
        ("rust", []) => print!("{}", herald_codegen::generate_rust(&model)),
        (command @ ("typescript" | "fixtures" | "asyncapi" | "generate"), rest)
            if rest.is_empty() || rest == ["--check"] =>
        {
            let root = defs.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let mut files = Files { root, check: !rest.is_empty(), stale: Vec::new() };
            if matches!(command, "typescript" | "generate") {
                files.put(TYPESCRIPT_PATH, herald_codegen::generate_typescript(&model).as_bytes())?;
            }
            if matches!(command, "asyncapi" | "generate") {
                files.put(herald_codegen::ASYNCAPI_PATH, herald_codegen::generate_asyncapi(&model).as_bytes())?;
                files.put(herald_codegen::CATALOGUE_HTML_PATH, herald_codegen::catalogue_html(&model).as_bytes())?;
            }
            if matches!(command, "fixtures" | "generate") {
                files.fixtures(&model)?;
            }
            if !files.stale.is_empty() {
                for path in &files.stale {
                    eprintln!("error: {path} is stale");
                }
                eprintln!("  help: run `cargo run -p herald-codegen -- generate` and commit the result");
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => return Err(format!("unknown command {:?}\n\n{}", args.join(" "), usage())),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes generated files under the workspace root, or with `check` lists those that differ.
struct Files {
    root: PathBuf,
    check: bool,
    stale: Vec<String>,
}

impl Files {
    fn put(&mut self, relative: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.root.join(relative);
        if std::fs::read(&path).is_ok_and(|current| current == bytes) {
            return Ok(());
        }
        if self.check {
            self.stale.push(relative.to_owned());
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        println!("wrote {relative}");
        Ok(())
    }

    /// Writes every fixture and removes (or, with `check`, reports) the files of event folders
    /// that no example makes any more. Folders starting with `_` are written by hand.
    fn fixtures(&mut self, model: &herald_codegen::Model) -> Result<(), String> {
        let fixtures = herald_codegen::fixtures(model);
        let mut wanted = std::collections::BTreeSet::new();
        for fixture in &fixtures {
            for (relative, bytes) in fixture.files() {
                let relative = format!("{}/{relative}", herald_codegen::FIXTURES_DIR);
                self.put(&relative, bytes)?;
                wanted.insert(relative);
            }
        }
        let dir = self.root.join(herald_codegen::FIXTURES_DIR);
        let Ok(folders) = std::fs::read_dir(&dir) else { return Ok(()) };
        for folder in folders.flatten() {
            let name = folder.file_name().to_string_lossy().into_owned();
            if name.starts_with('_') || !folder.path().is_dir() {
                continue;
            }
            for file in std::fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                let relative =
                    format!("{}/{name}/{}", herald_codegen::FIXTURES_DIR, file.file_name().to_string_lossy());
                if wanted.contains(&relative) {
                    continue;
                }
                if self.check {
                    self.stale.push(relative);
                } else {
                    std::fs::remove_file(file.path())
                        .map_err(|error| format!("cannot remove {}: {error}", file.path().display()))?;
                    println!("removed {relative}");
                }
            }
        }
        Ok(())
    }
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
