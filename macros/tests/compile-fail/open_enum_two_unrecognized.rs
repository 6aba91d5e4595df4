#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready,
    #[herald(unrecognized)]
    Unrecognized(String),
    #[herald(unrecognized)]
    Other(String),
}

fn main() {}
