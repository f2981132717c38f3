//! A future that yields to the executor once, waking itself so it is polled again:
//! test agents await it so that steps overlap. Shared by the executor tests and the
//! executor properties.

/// Yields once; `YieldNow(false).await`.
pub struct YieldNow(pub bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
