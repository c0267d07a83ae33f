"""The datastore: content-addressed blobs (``blobs``, ``serialize``) and SQLite metadata (``metadata``)."""
