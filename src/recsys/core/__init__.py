"""Shared by every stage: typed settings, the AWS client factory, database connections, errors."""
