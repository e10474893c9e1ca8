"""Traffic routers: one module per router behind one small interface."""
