#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready,
    #[herald(value = "ready")]
    AlsoReady,
    #[herald(unrecognized)]
    Unrecognized(String),
}

fn main() {}
