"""A local stand-in for the Intercom and Stripe APIs, loaded from public event logs."""
