"""The Label Studio review configs (``assisted.xml``, ``blind.xml``), shipped as package data."""
