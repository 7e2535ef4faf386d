"""The server side: the table store, the update functions and the serve loop."""
