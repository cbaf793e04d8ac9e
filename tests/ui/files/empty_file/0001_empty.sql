-- nothing but a comment

