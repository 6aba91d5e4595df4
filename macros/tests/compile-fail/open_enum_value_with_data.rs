#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready(u32),
    #[herald(unrecognized)]
    Unrecognized(String),
}

fn main() {}
