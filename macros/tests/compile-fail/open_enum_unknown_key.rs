#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(valeu = "ready")]
    Ready,
    #[herald(unrecognized)]
    Unrecognized(String),
}

fn main() {}
