"""Elasticsearch index templates (JSON), shipped as package data so installs carry them."""
