"""Partitioned loaders and writers: each worker reads only its share."""
