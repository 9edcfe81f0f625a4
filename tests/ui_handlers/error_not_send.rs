// An error type that is not Send (it holds an Rc): the handler's future
// could not move between threads.
#[derive(Debug)]
struct Local(std::rc::Rc<String>);

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Local {}

async fn fails() -> Result<i64, Local> {
    Err(Local(std::rc::Rc::new("no".into())))
}

fn main() {
    let _ = switchboard::Router::new().route("fails", fails);
}
