#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready,
}

fn main() {}
