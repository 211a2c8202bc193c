"""What gets built for AWS: the Lambda deployment zip."""
