#[derive(herald_macros::Event)]
enum NotAStruct {
    Created,
}

fn main() {}
