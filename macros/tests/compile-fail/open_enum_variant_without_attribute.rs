#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready,
    Failed,
    #[herald(unrecognized)]
    Unrecognized(String),
}

fn main() {}
